//! [`LogBatchBuilder`]: decoded log records in, `logs` `RecordBatch` out.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Builder, Int64Builder, RecordBatch, TimestampNanosecondBuilder};

use crate::builder::{
    Attr, AttrType, BatchSizing, PendingAttr, PendingValue, SharedAttributes, append_attr_triples,
    append_attrs,
};
use crate::schema::Source;
use crate::tables::logs_schema;
use crate::text_columns::{AttrMapColumn, TextColumn};

/// The body of a log record: its value rendered as text, like an attribute
/// value (see the crate docs), and the value's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogBody<'a> {
    pub text: &'a str,
    /// `String` leaves `body_type` null.
    pub ty: AttrType,
}

/// One log record, borrowed from whatever the decoder holds. Ids are already
/// validated.
#[derive(Debug, Clone)]
pub struct LogRecord<'a> {
    pub project: &'a str,
    /// When the event happened (the decoder falls back to the observed time).
    pub time_ns: i64,
    /// When a collector or SDK saw it; `None` when not sent.
    pub observed_time_ns: Option<i64>,
    /// `None`: the record is not tied to a trace.
    pub trace_id: Option<[u8; 16]>,
    pub span_id: Option<[u8; 8]>,
    /// The OTLP `SeverityNumber`, as sent (0 is unspecified).
    pub severity_number: i32,
    /// Empty or `None`: null.
    pub severity_text: Option<&'a str>,
    /// `None`: no body (null).
    pub body: Option<LogBody<'a>>,
    pub attributes: &'a [Attr<'a>],
    pub resource_attributes: &'a [Attr<'a>],
    pub scope_name: Option<&'a str>,
    pub scope_version: Option<&'a str>,
    /// The OTLP `flags` (W3C trace flags in the low byte).
    pub flags: u32,
    /// Empty or `None`: null.
    pub event_name: Option<&'a str>,
    pub service_name: &'a str,
    pub source: Source,
}

/// Builds `logs` record batches (schema [`logs_schema`]). Not thread-safe; one
/// per decoder.
pub struct LogBatchBuilder {
    project: TextColumn,
    time: TimestampNanosecondBuilder,
    observed_time: TimestampNanosecondBuilder,
    trace_id: TextColumn,
    span_id: TextColumn,
    severity_number: Int32Builder,
    severity_text: TextColumn,
    body: TextColumn,
    body_type: TextColumn,
    attributes: AttrMapColumn,
    attribute_types: AttrMapColumn,
    resource_attributes: AttrMapColumn,
    resource_attribute_types: AttrMapColumn,
    scope_name: TextColumn,
    scope_version: TextColumn,
    flags: Int64Builder,
    event_name: TextColumn,
    service_name: TextColumn,
    source: TextColumn,
}

impl Default for LogBatchBuilder {
    fn default() -> Self {
        Self::with_sizing(&BatchSizing::default())
    }
}

impl LogBatchBuilder {
    /// A builder sized for what `sizing` expects; its `spans` fields count
    /// log records and their attributes.
    pub fn with_sizing(sizing: &BatchSizing) -> Self {
        let records = sizing.spans;
        let ts = || TimestampNanosecondBuilder::with_capacity(records).with_timezone("UTC");
        let strings = |bytes_each: usize| TextColumn::with_capacity(records, records * bytes_each);
        let map = |entries: usize, key_bytes: usize, value_bytes: usize| {
            AttrMapColumn::with_capacity(records, entries, key_bytes, value_bytes)
        };
        let typed = sizing.span_attributes / 4;
        LogBatchBuilder {
            project: strings(8),
            time: ts(),
            observed_time: ts(),
            trace_id: strings(32),
            span_id: strings(16),
            severity_number: Int32Builder::with_capacity(records),
            severity_text: strings(5),
            body: strings(64),
            body_type: strings(0),
            attributes: map(
                sizing.span_attributes,
                sizing.span_key_bytes,
                sizing.span_value_bytes,
            ),
            attribute_types: map(typed, sizing.span_key_bytes / 4, typed * 4),
            resource_attributes: map(
                sizing.resource_attributes,
                sizing.resource_key_bytes,
                sizing.resource_value_bytes,
            ),
            resource_attribute_types: map(0, 0, 0),
            scope_name: strings(16),
            scope_version: strings(8),
            flags: Int64Builder::with_capacity(records),
            event_name: strings(0),
            service_name: strings(16),
            source: strings(4),
        }
    }

    /// Records appended since the last [`finish`](Self::finish).
    pub fn len(&self) -> usize {
        self.project.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `record` with its own attributes and resource attributes.
    pub fn append(&mut self, record: &LogRecord<'_>) {
        self.append_before_attributes(record);
        append_attrs(
            &mut self.attributes,
            &mut self.attribute_types,
            record.attributes,
        );
        append_attrs(
            &mut self.resource_attributes,
            &mut self.resource_attribute_types,
            record.resource_attributes,
        );
        self.append_after_attributes(record);
    }

    /// Appends `record` with `attributes` (rendered into `text`, see
    /// [`PendingAttr`]) as its attributes, and `resource` as its resource
    /// attributes, or `record.resource_attributes` when `None`;
    /// `record.attributes` is not read. The batch is the one
    /// [`append`](Self::append) would build from the same values.
    pub fn append_rendered(
        &mut self,
        record: &LogRecord<'_>,
        text: &str,
        attributes: &[PendingAttr<'_>],
        resource: Option<&SharedAttributes>,
    ) {
        self.append_before_attributes(record);
        append_attr_triples(
            &mut self.attributes,
            &mut self.attribute_types,
            attributes.iter().map(|attr| {
                let value = match &attr.value {
                    PendingValue::Borrowed(s) => *s,
                    // A range outside `text` is the decoder's bug; an empty
                    // value keeps the batch well-formed.
                    PendingValue::Text(range) => text.get(range.clone()).unwrap_or_default(),
                };
                (attr.key, value, attr.ty)
            }),
        );
        match resource {
            Some(resource) => resource.append_to(
                &mut self.resource_attributes,
                &mut self.resource_attribute_types,
            ),
            None => append_attrs(
                &mut self.resource_attributes,
                &mut self.resource_attribute_types,
                record.resource_attributes,
            ),
        }
        self.append_after_attributes(record);
    }

    fn append_before_attributes(&mut self, record: &LogRecord<'_>) {
        self.project.append(record.project);
        self.time.append_value(record.time_ns);
        self.observed_time.append_option(record.observed_time_ns);
        match &record.trace_id {
            Some(id) => self.trace_id.append_hex(id),
            None => self.trace_id.append_null(),
        }
        match &record.span_id {
            Some(id) => self.span_id.append_hex(id),
            None => self.span_id.append_null(),
        }
        self.severity_number.append_value(record.severity_number);
        self.severity_text.append_non_empty(record.severity_text);
        match record.body {
            Some(body) => {
                self.body.append(body.text);
                match body.ty {
                    AttrType::String => self.body_type.append_null(),
                    ty => self.body_type.append(ty.as_str()),
                }
            }
            None => {
                self.body.append_null();
                self.body_type.append_null();
            }
        }
    }

    fn append_after_attributes(&mut self, record: &LogRecord<'_>) {
        self.scope_name.append_non_empty(record.scope_name);
        self.scope_version.append_non_empty(record.scope_version);
        self.flags.append_value(i64::from(record.flags));
        self.event_name.append_non_empty(record.event_name);
        self.service_name.append(record.service_name);
        self.source.append(record.source.as_str());
    }

    /// The batch of everything appended so far; the builder is empty afterwards.
    pub fn finish(&mut self) -> RecordBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.project.finish()),
            Arc::new(self.time.finish()),
            Arc::new(self.observed_time.finish()),
            Arc::new(self.trace_id.finish()),
            Arc::new(self.span_id.finish()),
            Arc::new(self.severity_number.finish()),
            Arc::new(self.severity_text.finish()),
            Arc::new(self.body.finish()),
            Arc::new(self.body_type.finish()),
            self.attributes.finish(),
            self.attribute_types.finish(),
            self.resource_attributes.finish(),
            self.resource_attribute_types.finish(),
            Arc::new(self.scope_name.finish()),
            Arc::new(self.scope_version.finish()),
            Arc::new(self.flags.finish()),
            Arc::new(self.event_name.finish()),
            Arc::new(self.service_name.finish()),
            Arc::new(self.source.finish()),
        ];
        RecordBatch::try_new(logs_schema(), columns)
            .expect("LogBatchBuilder columns match logs_schema()")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Int32Type, Int64Type, TimestampNanosecondType};

    fn record<'a>(attrs: &'a [Attr<'a>], resource: &'a [Attr<'a>]) -> LogRecord<'a> {
        LogRecord {
            project: "p",
            time_ns: 10,
            observed_time_ns: Some(12),
            trace_id: Some([0xab; 16]),
            span_id: Some([0xcd; 8]),
            severity_number: 17,
            severity_text: Some("ERROR"),
            body: Some(LogBody {
                text: "boom",
                ty: AttrType::String,
            }),
            attributes: attrs,
            resource_attributes: resource,
            scope_name: Some("app"),
            scope_version: None,
            flags: 1,
            event_name: None,
            service_name: "svc",
            source: Source::Otlp,
        }
    }

    #[test]
    fn builds_rows_matching_the_schema() {
        let attrs = [Attr::string("k", "v"), Attr::typed("n", "3", AttrType::Int)];
        let mut builder = LogBatchBuilder::default();
        builder.append(&record(&attrs, &[]));
        builder.append(&LogRecord {
            observed_time_ns: None,
            trace_id: None,
            span_id: None,
            severity_text: Some(""),
            body: Some(LogBody {
                text: "[]",
                ty: AttrType::Array,
            }),
            event_name: Some("browser.click"),
            ..record(&[], &[])
        });
        builder.append(&LogRecord {
            body: None,
            flags: u32::MAX,
            ..record(&[], &[])
        });
        let batch = builder.finish();
        assert!(builder.is_empty());
        assert_eq!(batch.schema(), logs_schema());
        assert_eq!(batch.num_rows(), 3);
        let column = |name: &str| batch.column_by_name(name).unwrap().clone();
        let observed = column("observed_time");
        let observed = observed.as_primitive::<TimestampNanosecondType>();
        assert_eq!((observed.value(0), observed.is_null(1)), (12, true));
        let trace = column("trace_id");
        let trace = trace.as_string::<i32>();
        assert_eq!(trace.value(0), "abababababababababababababababab");
        assert!(trace.is_null(1));
        assert_eq!(
            column("severity_number")
                .as_primitive::<Int32Type>()
                .value(0),
            17
        );
        assert!(column("severity_text").is_null(1), "empty text is null");
        let body = column("body");
        let body = body.as_string::<i32>();
        let body_type = column("body_type");
        let body_type = body_type.as_string::<i32>();
        assert_eq!((body.value(0), body_type.is_null(0)), ("boom", true));
        assert_eq!((body.value(1), body_type.value(1)), ("[]", "array"));
        assert!(body.is_null(2) && body_type.is_null(2));
        assert_eq!(column("attribute_types").as_map().value(0).len(), 1);
        assert_eq!(
            column("flags").as_primitive::<Int64Type>().value(2),
            i64::from(u32::MAX)
        );
        assert_eq!(
            column("event_name").as_string::<i32>().value(1),
            "browser.click"
        );
        assert!(column("scope_version").is_null(0));
    }

    #[test]
    fn rendered_attributes_build_the_same_batch() {
        let attrs = [
            Attr::string("k", "v"),
            Attr::typed("n", "12", AttrType::Int),
        ];
        let resource = [
            Attr::string("service.name", "svc"),
            Attr::typed("host.cpus", "8", AttrType::Int),
        ];
        let pending = [
            PendingAttr {
                key: "k",
                value: PendingValue::Borrowed("v"),
                ty: AttrType::String,
            },
            PendingAttr {
                key: "n",
                value: PendingValue::Text(0..2),
                ty: AttrType::Int,
            },
        ];
        let shared = SharedAttributes::new(&resource);
        let mut direct = LogBatchBuilder::default();
        let mut rendered = LogBatchBuilder::default();
        for shared_resource in [Some(&shared), None] {
            direct.append(&record(&attrs, &resource));
            let bare = record(&[], &resource);
            rendered.append_rendered(&bare, "12", &pending, shared_resource);
        }
        assert_eq!(direct.finish(), rendered.finish());
    }
}
