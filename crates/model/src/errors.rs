//! [`ErrorBatchBuilder`]: decoded error events in, Arrow `errors` batches out.

use std::sync::Arc;

use arrow::array::{ArrayRef, MapBuilder, RecordBatch, StringBuilder, TimestampNanosecondBuilder};

use crate::ids::hex_lower;
use crate::schema::Source;
use crate::tables::errors_schema;

/// One error event, borrowed from whatever the decoder holds. Ids are already
/// validated; `None` ids are stored as null.
#[derive(Debug, Clone)]
pub struct ErrorRecord<'a> {
    pub project: &'a str,
    pub event_id: [u8; 16],
    pub time_ns: i64,
    pub trace_id: Option<[u8; 16]>,
    pub span_id: Option<[u8; 8]>,
    pub level: &'a str,
    pub exception_type: Option<&'a str>,
    pub exception_value: Option<&'a str>,
    /// JSON text, see [`errors_schema`](crate::errors_schema).
    pub stack_frames: Option<&'a str>,
    pub release: Option<&'a str>,
    pub environment: Option<&'a str>,
    pub transaction: Option<&'a str>,
    pub tags: &'a [(&'a str, &'a str)],
    pub service_name: &'a str,
    pub source: Source,
}

/// Builds `errors` record batches (see [`errors_schema`](crate::errors_schema)).
///
/// Error events are few next to spans, so this uses Arrow's own builders.
pub struct ErrorBatchBuilder {
    project: StringBuilder,
    event_id: StringBuilder,
    time: TimestampNanosecondBuilder,
    trace_id: StringBuilder,
    span_id: StringBuilder,
    level: StringBuilder,
    exception_type: StringBuilder,
    exception_value: StringBuilder,
    stack_frames: StringBuilder,
    release: StringBuilder,
    environment: StringBuilder,
    transaction: StringBuilder,
    tags: MapBuilder<StringBuilder, StringBuilder>,
    service_name: StringBuilder,
    source: StringBuilder,
    hex: String,
    rows: usize,
}

impl Default for ErrorBatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ErrorBatchBuilder {
    pub fn new() -> Self {
        ErrorBatchBuilder {
            project: StringBuilder::new(),
            event_id: StringBuilder::new(),
            time: TimestampNanosecondBuilder::new().with_timezone("UTC"),
            trace_id: StringBuilder::new(),
            span_id: StringBuilder::new(),
            level: StringBuilder::new(),
            exception_type: StringBuilder::new(),
            exception_value: StringBuilder::new(),
            stack_frames: StringBuilder::new(),
            release: StringBuilder::new(),
            environment: StringBuilder::new(),
            transaction: StringBuilder::new(),
            tags: MapBuilder::new(None, StringBuilder::new(), StringBuilder::new()),
            service_name: StringBuilder::new(),
            source: StringBuilder::new(),
            hex: String::with_capacity(32),
            rows: 0,
        }
    }

    /// Errors appended since the last [`finish`](Self::finish).
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    fn hex_or_null(hex: &mut String, builder: &mut StringBuilder, bytes: Option<&[u8]>) {
        match bytes {
            Some(bytes) => {
                hex.clear();
                hex_lower(bytes, hex);
                builder.append_value(hex.as_str());
            }
            None => builder.append_null(),
        }
    }

    pub fn append(&mut self, error: &ErrorRecord<'_>) {
        self.project.append_value(error.project);
        Self::hex_or_null(&mut self.hex, &mut self.event_id, Some(&error.event_id));
        self.time.append_value(error.time_ns);
        Self::hex_or_null(
            &mut self.hex,
            &mut self.trace_id,
            error.trace_id.as_ref().map(|id| &id[..]),
        );
        Self::hex_or_null(
            &mut self.hex,
            &mut self.span_id,
            error.span_id.as_ref().map(|id| &id[..]),
        );
        self.level.append_value(error.level);
        self.exception_type.append_option(error.exception_type);
        self.exception_value.append_option(error.exception_value);
        self.stack_frames.append_option(error.stack_frames);
        self.release.append_option(error.release);
        self.environment.append_option(error.environment);
        self.transaction.append_option(error.transaction);
        for (key, value) in error.tags {
            self.tags.keys().append_value(key);
            self.tags.values().append_value(value);
        }
        self.tags
            .append(true)
            .expect("map keys and values stay aligned");
        self.service_name.append_value(error.service_name);
        self.source.append_value(error.source.as_str());
        self.rows += 1;
    }

    pub fn finish(&mut self) -> RecordBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.project.finish()),
            Arc::new(self.event_id.finish()),
            Arc::new(self.time.finish()),
            Arc::new(self.trace_id.finish()),
            Arc::new(self.span_id.finish()),
            Arc::new(self.level.finish()),
            Arc::new(self.exception_type.finish()),
            Arc::new(self.exception_value.finish()),
            Arc::new(self.stack_frames.finish()),
            Arc::new(self.release.finish()),
            Arc::new(self.environment.finish()),
            Arc::new(self.transaction.finish()),
            Arc::new(self.tags.finish()),
            Arc::new(self.service_name.finish()),
            Arc::new(self.source.finish()),
        ];
        self.rows = 0;
        RecordBatch::try_new(errors_schema(), columns)
            .expect("ErrorBatchBuilder columns match errors_schema()")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};

    #[test]
    fn builds_a_batch_of_the_errors_schema() {
        let mut builder = ErrorBatchBuilder::new();
        builder.append(&ErrorRecord {
            project: "42",
            event_id: [0xab; 16],
            time_ns: 1_700_000_000_000_000_000,
            trace_id: Some([0x01; 16]),
            span_id: None,
            level: "error",
            exception_type: Some("ValueError"),
            exception_value: Some("boom"),
            stack_frames: Some("[]"),
            release: None,
            environment: Some("prod"),
            transaction: None,
            tags: &[("customer", "acme")],
            service_name: "42",
            source: Source::Sentry,
        });
        assert_eq!(builder.len(), 1);
        let batch = builder.finish();
        assert!(builder.is_empty());
        assert_eq!(batch.schema(), errors_schema());
        assert_eq!(batch.num_rows(), 1);
        let event_id = batch.column_by_name("event_id").unwrap().as_string::<i32>();
        assert_eq!(event_id.value(0), "ab".repeat(16));
        let span_id = batch.column_by_name("span_id").unwrap();
        assert!(span_id.is_null(0));
        let tags = batch.column_by_name("tags").unwrap().as_map();
        assert_eq!(tags.value(0).len(), 1);
    }
}
