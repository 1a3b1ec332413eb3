//! OTLP/protobuf `ExportLogsServiceRequest`s read in place, straight into a
//! [`LogBatchBuilder`].
//!
//! The traces decoder's rules (see the parent module) hold here too: every
//! string is borrowed from the body, the body is accepted or refused exactly
//! as prost accepts or refuses it, parts that are not rendered (scope
//! attributes, rejected records) are still checked, and a refusal of the
//! whole request (nesting, expansion budget) gives way to a wire error later
//! in the body. A `body` given twice is merged the way prost merges it.
//! Differential tests hold it to [`crate::decode_otlp_logs_protobuf_with_prost`].

use lighttrace_model::{BatchSizing, LogBatchBuilder, SharedAttributes};

use super::schema::{self, Message};
use super::values::{render_body, render_key_value};
use super::wire::{RECURSION_LIMIT, Reader, Value};
use super::{
    Envelope, Position, Scope, Stop, each_scope, key_value_sizes, malformed, pass_again, read_scope,
};
use crate::logs::{
    LogContext, LogIdentity, LogScratch, LogText, append_log, record_bytes, validate,
};
use crate::otlp::{Budget, LOG_RECORDS, Rejections};
use crate::{DecodedLogs, IngestError};

/// Decodes an OTLP/protobuf `ExportLogsServiceRequest`; see the module docs.
pub(crate) fn decode(
    body: &[u8],
    project: &str,
    budget: usize,
) -> Result<DecodedLogs, IngestError> {
    let mut sink = Sink {
        project,
        builder: LogBatchBuilder::with_sizing(&estimate_size(body)),
        rejections: Rejections::of(LOG_RECORDS),
        accepted: 0,
        budget: Budget::of(budget, LOG_RECORDS),
        scratch: LogScratch::default(),
        attributes: Vec::new(),
        bodies: Vec::new(),
    };
    match request(body, &mut sink) {
        Ok(()) => Ok(DecodedLogs {
            batch: sink.builder.finish(),
            accepted: sink.accepted,
            rejected: sink.rejections.count(),
            rejection_message: sink.rejections.message(),
        }),
        Err(Stop::Wire(e)) => Err(malformed(e)),
        Err(Stop::Refused(refusal)) => {
            match schema::check(Message::ExportLogsServiceRequest, body, RECURSION_LIMIT) {
                Err(e) => Err(malformed(e)),
                Ok(()) => Err(refusal),
            }
        }
    }
}

/// Records and their attributes in the body, to size the Arrow buffers once;
/// a best effort that stops at the first malformed byte.
fn estimate_size(body: &[u8]) -> BatchSizing {
    let mut sizing = BatchSizing::default();
    let mut request = Reader::new(body, "");
    while let Ok(Some((tag, value))) = request.next_field() {
        let (1, Value::Len(resource_logs)) = (tag, value) else {
            continue;
        };
        let (mut resource_attributes, mut resource_keys, mut resource_values) = (0, 0, 0);
        let records_before = sizing.spans;
        let mut reader = Reader::new(resource_logs, "");
        while let Ok(Some((tag, value))) = reader.next_field() {
            match (tag, value) {
                (1, Value::Len(resource)) => {
                    let mut reader = Reader::new(resource, "");
                    while let Ok(Some((tag, value))) = reader.next_field() {
                        if let (1, Value::Len(kv)) = (tag, value) {
                            resource_attributes += 1;
                            let (key, value) = key_value_sizes(kv);
                            resource_keys += key;
                            resource_values += value;
                        }
                    }
                }
                (2, Value::Len(scope_logs)) => {
                    let mut reader = Reader::new(scope_logs, "");
                    while let Ok(Some((tag, value))) = reader.next_field() {
                        let (2, Value::Len(record)) = (tag, value) else {
                            continue;
                        };
                        sizing.spans += 1;
                        let mut reader = Reader::new(record, "");
                        while let Ok(Some((tag, value))) = reader.next_field() {
                            if let (6, Value::Len(kv)) = (tag, value) {
                                sizing.span_attributes += 1;
                                let (key, value) = key_value_sizes(kv);
                                sizing.span_key_bytes += key;
                                sizing.span_value_bytes += value;
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        let records = sizing.spans - records_before;
        sizing.resource_attributes += records * resource_attributes;
        sizing.resource_key_bytes += records * resource_keys;
        sizing.resource_value_bytes += records * resource_values;
    }
    sizing
}

/// Where log records go, and the buffers reused from record to record.
struct Sink<'r, 'p> {
    project: &'p str,
    builder: LogBatchBuilder,
    rejections: Rejections,
    accepted: usize,
    budget: Budget,
    scratch: LogScratch<'r>,
    /// `KeyValue` and `AnyValue` bodies of the current record's attributes and body.
    attributes: Vec<&'r [u8]>,
    bodies: Vec<&'r [u8]>,
}

fn request<'r>(body: &'r [u8], sink: &mut Sink<'r, '_>) -> Result<(), Stop> {
    each_scope(
        body,
        &LOGS,
        |scope_logs, ctx, position, service_name, resource| {
            sink.scope_logs(scope_logs, ctx, position, service_name, resource)
        },
    )
}

const LOGS: Envelope = Envelope {
    request: Message::ExportLogsServiceRequest,
    resource_message: Message::ResourceLogs,
    request_field: "ExportLogsServiceRequest.resource_logs",
    resource_fields: [
        "ResourceLogs.resource",
        "ResourceLogs.scope_logs",
        "ResourceLogs.schema_url",
    ],
};

impl<'r> Sink<'r, '_> {
    fn scope_logs(
        &mut self,
        body: &'r [u8],
        ctx: u32,
        position: &Position,
        service_name: &str,
        resource: &SharedAttributes,
    ) -> Result<(), Stop> {
        let mut scope = Scope::default();
        let mut reader = Reader::new(body, Message::ScopeLogs.name());
        while let Some((tag, value)) = reader.next_field()? {
            match tag {
                1 => read_scope(value.message("ScopeLogs.scope", ctx)?, ctx - 1, &mut scope)?,
                2 => {
                    value.message("ScopeLogs.log_records", ctx)?;
                }
                3 => {
                    value.string("ScopeLogs.schema_url")?;
                }
                _ => reader.skip_unknown(tag, value, ctx)?,
            }
        }
        let context = LogContext {
            project: self.project,
            service_name,
            resource_attributes: resource,
            scope_name: scope.name,
            scope_version: scope.version,
        };
        let mut reader = Reader::new(body, Message::ScopeLogs.name());
        let mut record_index = 0;
        while let Some((tag, value)) = reader.next_field()? {
            match (tag, value) {
                (2, Value::Len(record)) => {
                    self.log_record(record, ctx - 1, position, record_index, &context)?;
                    record_index += 1;
                }
                (tag, value) => pass_again(&mut reader, tag, value, ctx)?,
            }
        }
        Ok(())
    }

    fn log_record(
        &mut self,
        body: &'r [u8],
        ctx: u32,
        position: &Position,
        record_index: usize,
        context: &LogContext<'_>,
    ) -> Result<(), Stop> {
        let mut identity = LogIdentity {
            trace_id: &[],
            span_id: &[],
            time_unix_nano: 0,
            observed_time_unix_nano: 0,
        };
        let mut text = LogText::default();
        self.attributes.clear();
        self.bodies.clear();
        let mut reader = Reader::new(body, Message::LogRecord.name());
        while let Some((tag, value)) = reader.next_field()? {
            match tag {
                1 => identity.time_unix_nano = value.fixed64("LogRecord.time_unix_nano")?,
                2 => text.severity_number = value.varint("LogRecord.severity_number")? as i32,
                3 => text.severity_text = value.string("LogRecord.severity_text")?,
                5 => self.bodies.push(value.message("LogRecord.body", ctx)?),
                6 => self
                    .attributes
                    .push(value.message("LogRecord.attributes", ctx)?),
                7 => {
                    value.varint("LogRecord.dropped_attributes_count")?;
                }
                8 => text.flags = value.fixed32("LogRecord.flags")?,
                9 => identity.trace_id = value.bytes("LogRecord.trace_id")?,
                10 => identity.span_id = value.bytes("LogRecord.span_id")?,
                11 => {
                    identity.observed_time_unix_nano =
                        value.fixed64("LogRecord.observed_time_unix_nano")?;
                }
                12 => text.event_name = value.string("LogRecord.event_name")?,
                _ => reader.skip_unknown(tag, value, ctx)?,
            }
        }

        let valid = match validate(&identity) {
            Ok(valid) => valid,
            Err(why) => {
                self.rejections
                    .add(position.resource, position.scope, record_index, &why);
                // Not rendered, but prost would have decoded them all the same.
                for &key_value in &self.attributes {
                    schema::check(Message::KeyValue, key_value, ctx - 1)?;
                }
                for &any_value in &self.bodies {
                    schema::check(Message::AnyValue, any_value, ctx - 1)?;
                }
                return Ok(());
            }
        };

        let scratch = &mut self.scratch;
        scratch.clear();
        for &key_value in &self.attributes {
            render_key_value(
                key_value,
                ctx - 1,
                &mut scratch.text,
                &mut scratch.attributes,
            )?;
        }
        scratch.body = render_body(body, &self.bodies, ctx - 1, &mut scratch.text)?;
        self.budget
            .spend(position.resource_bytes, record_bytes(&text, scratch))
            .map_err(Stop::Refused)?;
        append_log(&mut self.builder, scratch, context, &text, &valid);
        self.accepted += 1;
        Ok(())
    }
}
