//! Printing query results: a table, JSON or CSV.

use std::io::{self, Write};

use anyhow::Context;
use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use lighttrace_server::encode;

/// How `lighttrace sql` prints a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// An ASCII table.
    #[default]
    Table,
    /// One JSON array of objects, one per row (values as in the SQL API).
    Json,
    /// CSV with a header line; lists, maps and structs as JSON text.
    Csv,
}

/// The result in `format`, as bytes ending in a newline.
pub fn render(
    format: Format,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> anyhow::Result<Vec<u8>> {
    let mut out = match format {
        Format::Table => {
            arrow::util::pretty::pretty_format_batches_with_schema(schema.clone(), batches)
                .context("cannot format the result as a table")?
                .to_string()
                .into_bytes()
        }
        Format::Json => {
            encode::json_objects(batches).context("cannot encode the result as JSON")?
        }
        Format::Csv => csv(schema, batches).context("cannot encode the result as CSV")?,
    };
    if out.last() != Some(&b'\n') {
        out.push(b'\n');
    }
    Ok(out)
}

fn csv(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>, arrow::error::ArrowError> {
    let all_utc = schema.fields().iter().all(|field| match field.data_type() {
        DataType::Timestamp(_, Some(tz)) => encode::is_utc(tz),
        _ => true,
    });
    let tz_format = if all_utc {
        encode::UTC_TIMESTAMP_FORMAT
    } else {
        encode::TZ_TIMESTAMP_FORMAT
    };
    let mut writer = arrow::csv::WriterBuilder::new()
        .with_header(true)
        .with_timestamp_tz_format(tz_format.to_owned())
        .with_timestamp_format(encode::NAIVE_TIMESTAMP_FORMAT.to_owned())
        .build(Vec::new());
    if batches.is_empty() {
        // The header alone.
        let empty = RecordBatch::new_empty(schema.clone());
        writer.write(&encode::nested_as_json_text(&empty)?)?;
    }
    for batch in batches {
        writer.write(&encode::nested_as_json_text(batch)?)?;
    }
    Ok(writer.into_inner())
}

/// Writes to stdout; a closed pipe (`lighttrace sql … | head`) is not an error.
pub fn print(bytes: &[u8]) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to stdout"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow::array::{
        ArrayRef, Int64Array, ListBuilder, StringArray, StringBuilder, TimestampNanosecondArray,
    };
    use arrow::datatypes::{Field, Schema};

    fn sample() -> RecordBatch {
        let mut list = ListBuilder::new(StringBuilder::new());
        list.values().append_value("a");
        list.append(true);
        list.append(false);
        RecordBatch::try_from_iter(vec![
            (
                "name",
                Arc::new(StringArray::from(vec![Some("GET /"), None])) as ArrayRef,
            ),
            ("n", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef),
            (
                "start_time",
                Arc::new(TimestampNanosecondArray::from(vec![1, 2]).with_timezone("UTC"))
                    as ArrayRef,
            ),
            ("tags", Arc::new(list.finish()) as ArrayRef),
        ])
        .unwrap()
    }

    fn text(format: Format, batches: &[RecordBatch]) -> String {
        let schema = sample().schema();
        String::from_utf8(render(format, &schema, batches).unwrap()).unwrap()
    }

    #[test]
    fn csv_has_a_header_rfc3339_times_and_json_for_nested_values() {
        assert_eq!(
            text(Format::Csv, &[sample()]),
            "name,n,start_time,tags\n\
             GET /,1,1970-01-01T00:00:00.000000001Z,\"[\"\"a\"\"]\"\n\
             ,2,1970-01-01T00:00:00.000000002Z,\n"
        );
        assert_eq!(text(Format::Csv, &[]), "name,n,start_time,tags\n");
    }

    #[test]
    fn json_is_an_array_of_objects() {
        let value: serde_json::Value =
            serde_json::from_str(&text(Format::Json, &[sample()])).unwrap();
        assert_eq!(value[0]["name"], "GET /");
        assert_eq!(value[1]["name"], serde_json::Value::Null);
        assert_eq!(value[0]["start_time"], "1970-01-01T00:00:00.000000001Z");
        assert_eq!(text(Format::Json, &[]), "[]\n");
    }

    #[test]
    fn tables_show_the_header_even_without_rows() {
        let table = text(Format::Table, &[sample()]);
        assert!(table.contains("| name "), "{table}");
        assert!(table.contains("GET /"), "{table}");
        let empty = text(Format::Table, &[]);
        assert!(empty.contains("start_time"), "{empty}");
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]));
        assert!(render(Format::Table, &schema, &[]).is_ok());
    }
}
