//! The tables a lake holds. Each has its own folder, files and buffers; all are
//! partitioned the same way, by (project, service, UTC hour of its time column),
//! and each file's trace ids go into the catalog's trace filter, so one trace id
//! finds a request's spans, log lines and errors without listing anything.

use std::fmt;

use arrow::datatypes::{Schema, SchemaRef};
use lighttrace_model::{columns, errors_schema, log_columns, logs_schema, spans_schema};

/// One table of the lake.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// `spans` (DESIGN.md), stored in the compact layout of [`crate::layout`].
    Spans,
    /// `logs`: OTLP log records ([`lighttrace_model::logs_schema`]).
    Logs,
    /// `errors`: Sentry error events ([`lighttrace_model::errors_schema`]).
    Errors,
}

impl fmt::Debug for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Table {
    pub const ALL: [Table; 3] = [Table::Spans, Table::Logs, Table::Errors];

    /// The SQL table name, also the top folder of its files.
    pub fn name(self) -> &'static str {
        match self {
            Table::Spans => "spans",
            Table::Logs => "logs",
            Table::Errors => "errors",
        }
    }

    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }

    pub fn schema(self) -> SchemaRef {
        match self {
            Table::Spans => spans_schema(),
            Table::Logs => logs_schema(),
            Table::Errors => errors_schema(),
        }
    }

    /// The time column that picks a row's hour partition and prunes by time.
    pub fn time_column(self) -> &'static str {
        match self {
            Table::Spans => columns::START_TIME,
            Table::Logs => log_columns::TIME,
            Table::Errors => lighttrace_model::error_columns::TIME,
        }
    }

    /// The table whose columns (names and types, in order) `schema` has;
    /// metadata and nullability are not compared.
    pub fn of_schema(schema: &Schema) -> Option<Table> {
        Table::ALL.into_iter().find(|table| {
            let want = table.schema();
            want.fields().len() == schema.fields().len()
                && want
                    .fields()
                    .iter()
                    .zip(schema.fields())
                    .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_schema_names_its_table() {
        for table in Table::ALL {
            assert_eq!(Table::of_schema(&table.schema()), Some(table));
            assert_eq!(Table::from_name(table.name()), Some(table));
            assert!(table.schema().index_of(table.time_column()).is_ok());
            for column in [columns::PROJECT, columns::SERVICE_NAME, columns::TRACE_ID] {
                assert!(table.schema().index_of(column).is_ok(), "{table}.{column}");
            }
        }
        assert_eq!(Table::of_schema(&Schema::empty()), None);
    }
}
