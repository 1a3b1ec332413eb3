//! OTLP logs (protobuf or JSON) into a `logs` batch, and the export response.
//!
//! The mapping is in the crate docs. Both encodings end in [`append_log`]:
//! protobuf is read in place by the borrowing wire decoder
//! (`crate::protobuf::logs`), JSON is read with serde into the
//! `opentelemetry-proto` structs and appended by [`append_request`], which is
//! also the prost reference path the differential tests compare with.

use std::fmt;

use lighttrace_model::{
    Attr, AttrType, BatchSizing, LogBatchBuilder, LogBody, LogRecord, PendingValue,
    SharedAttributes, Source,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::logs::v1::LogRecord as OtlpLogRecord;
use prost::Message as _;

use crate::attributes::{PendingAttr, recycle_attrs, render_attributes, render_value, resolve};
use crate::otlp::{
    Budget, LOG_RECORDS, Rejections, UNKNOWN_SERVICE, expansion_budget, nested_too_deep, parse_json,
};
use crate::{DecodedLogs, IngestError, OtlpEncoding};

/// Fixed-width columns and ids of one log record, counted against the budget.
const RECORD_OVERHEAD_BYTES: usize = 128;

/// Decodes an OTLP `ExportLogsServiceRequest` into a `logs` batch.
///
/// `body` must already be decompressed (see [`crate::decompress`]). Log
/// records with a trace or span id of the wrong length are counted in
/// [`DecodedLogs::rejected`] and left out; the call only fails when the body
/// as a whole is unusable (not OTLP, or a hostile payload such as attribute
/// values nested deeper than 16 levels).
pub fn decode_otlp_logs(
    body: &[u8],
    encoding: OtlpEncoding,
    project: &str,
) -> Result<DecodedLogs, IngestError> {
    match encoding {
        OtlpEncoding::Protobuf => {
            crate::protobuf::logs::decode(body, project, expansion_budget(body))
        }
        OtlpEncoding::Json => append_request(
            &parse_json(body, "ExportLogsServiceRequest")?,
            project,
            expansion_budget(body),
        ),
    }
}

/// Decodes an OTLP/protobuf logs request with prost first, then appends it
/// like a JSON one: the reference that differential tests and the fuzzer
/// compare the borrowing decoder with.
#[doc(hidden)]
pub fn decode_otlp_logs_protobuf_with_prost(
    body: &[u8],
    project: &str,
) -> Result<DecodedLogs, IngestError> {
    let request = ExportLogsServiceRequest::decode(body)
        .map_err(|e| IngestError::Malformed(format!("invalid OTLP protobuf: {e}")))?;
    append_request(&request, project, expansion_budget(body))
}

/// The ExportLogsServiceResponse for a request of which `rejected` log
/// records were invalid, for `message`: `partial_success` is set only when
/// records were rejected, as the OTLP specification asks.
pub fn logs_response(rejected: usize, message: Option<&str>) -> ExportLogsServiceResponse {
    ExportLogsServiceResponse {
        partial_success: (rejected > 0).then(|| ExportLogsPartialSuccess {
            rejected_log_records: i64::try_from(rejected).unwrap_or(i64::MAX),
            error_message: message.unwrap_or_default().to_string(),
        }),
    }
}

/// The ExportLogsServiceResponse for a request, in the request's encoding; a
/// full success is an empty message (`{}` in JSON).
pub fn encode_logs_response(
    encoding: OtlpEncoding,
    rejected: usize,
    message: Option<&str>,
) -> Vec<u8> {
    let response = logs_response(rejected, message);
    let partial = response.partial_success.is_some();
    crate::otlp::encode_response(encoding, &response, partial)
}

/// Why one log record was left out.
#[derive(Debug)]
pub(crate) enum LogRejection {
    TraceIdLength(usize),
    SpanIdLength(usize),
}

impl fmt::Display for LogRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogRejection::TraceIdLength(got) => {
                write!(f, "trace id must be empty or 16 bytes, got {got}")
            }
            LogRejection::SpanIdLength(got) => {
                write!(f, "span id must be empty or 8 bytes, got {got}")
            }
        }
    }
}

/// The ids and times of a log record as sent, before [`validate`].
pub(crate) struct LogIdentity<'r> {
    pub trace_id: &'r [u8],
    pub span_id: &'r [u8],
    pub time_unix_nano: u64,
    pub observed_time_unix_nano: u64,
}

impl<'r> LogIdentity<'r> {
    fn of(record: &'r OtlpLogRecord) -> Self {
        LogIdentity {
            trace_id: &record.trace_id,
            span_id: &record.span_id,
            time_unix_nano: record.time_unix_nano,
            observed_time_unix_nano: record.observed_time_unix_nano,
        }
    }
}

/// The checked ids and times of a log record.
pub(crate) struct ValidLog {
    trace_id: Option<[u8; 16]>,
    span_id: Option<[u8; 8]>,
    time_ns: i64,
    observed_time_ns: Option<i64>,
}

/// A nanosecond time as an Arrow timestamp; times past 2262 do not fit and
/// are kept as the largest one.
fn timestamp(unix_nano: u64) -> i64 {
    i64::try_from(unix_nano).unwrap_or(i64::MAX)
}

pub(crate) fn validate(record: &LogIdentity<'_>) -> Result<ValidLog, LogRejection> {
    let trace_id = match record.trace_id.len() {
        0 => None,
        16 => Some(<[u8; 16]>::try_from(record.trace_id).unwrap_or_default()),
        got => return Err(LogRejection::TraceIdLength(got)),
    };
    let span_id = match record.span_id.len() {
        0 => None,
        8 => Some(<[u8; 8]>::try_from(record.span_id).unwrap_or_default()),
        got => return Err(LogRejection::SpanIdLength(got)),
    };
    let observed_time_ns = match record.observed_time_unix_nano {
        0 => None,
        observed => Some(timestamp(observed)),
    };
    let time_ns = match record.time_unix_nano {
        0 => observed_time_ns.unwrap_or(0),
        time => timestamp(time),
    };
    Ok(ValidLog {
        // All zeros is the OTLP spelling of "no id".
        trace_id: trace_id.filter(|id| *id != [0; 16]),
        span_id: span_id.filter(|id| *id != [0; 8]),
        time_ns,
        observed_time_ns,
    })
}

/// The columns of a log record that need no checking, as sent.
#[derive(Default)]
pub(crate) struct LogText<'r> {
    pub severity_number: i32,
    pub severity_text: &'r str,
    pub flags: u32,
    pub event_name: &'r str,
}

impl<'r> LogText<'r> {
    fn of(record: &'r OtlpLogRecord) -> Self {
        LogText {
            severity_number: record.severity_number,
            severity_text: &record.severity_text,
            flags: record.flags,
            event_name: &record.event_name,
        }
    }
}

/// The rendered attributes and body of the current log record, in buffers
/// reused from record to record.
#[derive(Default)]
pub(crate) struct LogScratch<'r> {
    /// Rendered non-string values of the attributes and the body.
    pub text: String,
    pub attributes: Vec<PendingAttr<'r>>,
    /// `None`: the record has no body, or one with no value set.
    pub body: Option<(PendingValue<'r>, AttrType)>,
}

impl LogScratch<'_> {
    pub(crate) fn clear(&mut self) {
        self.text.clear();
        self.attributes.clear();
        self.body = None;
    }

    fn body_text(&self) -> Option<LogBody<'_>> {
        let (value, ty) = self.body.as_ref()?;
        let text = match value {
            PendingValue::Borrowed(s) => s,
            // Ranges come from this same `text`, cut at the end of whole values.
            PendingValue::Text(range) => self.text.get(range.clone()).unwrap_or_default(),
        };
        Some(LogBody { text, ty: *ty })
    }
}

/// The bytes of text that a log record rendered into `scratch` adds to the batch.
pub(crate) fn record_bytes(text: &LogText<'_>, scratch: &LogScratch<'_>) -> usize {
    let body = match &scratch.body {
        Some((PendingValue::Borrowed(s), _)) => s.len(),
        Some((PendingValue::Text(range), _)) => range.len(),
        None => 0,
    };
    RECORD_OVERHEAD_BYTES
        + text.severity_text.len()
        + text.event_name.len()
        + body
        + scratch
            .attributes
            .iter()
            .map(PendingAttr::text_len)
            .sum::<usize>()
}

/// What the log records of one scope share.
pub(crate) struct LogContext<'a> {
    pub project: &'a str,
    pub service_name: &'a str,
    pub resource_attributes: &'a SharedAttributes,
    pub scope_name: Option<&'a str>,
    pub scope_version: Option<&'a str>,
}

/// Appends a log record whose attributes and body are rendered in `scratch`.
pub(crate) fn append_log(
    builder: &mut LogBatchBuilder,
    scratch: &LogScratch<'_>,
    context: &LogContext<'_>,
    text: &LogText<'_>,
    valid: &ValidLog,
) {
    let record = LogRecord {
        project: context.project,
        time_ns: valid.time_ns,
        observed_time_ns: valid.observed_time_ns,
        trace_id: valid.trace_id,
        span_id: valid.span_id,
        severity_number: text.severity_number,
        severity_text: Some(text.severity_text),
        body: scratch.body_text(),
        attributes: &[],
        resource_attributes: &[],
        scope_name: context.scope_name,
        scope_version: context.scope_version,
        flags: text.flags,
        event_name: Some(text.event_name),
        service_name: context.service_name,
        source: Source::Otlp,
    };
    builder.append_rendered(
        &record,
        &scratch.text,
        &scratch.attributes,
        Some(context.resource_attributes),
    );
}

/// The `service_name` of a resource's records.
fn service_name(resource: &[KeyValue]) -> &str {
    resource
        .iter()
        .find(|kv| kv.key == "service.name")
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) if !s.is_empty() => Some(s.as_str()),
            _ => None,
        })
        .unwrap_or(UNKNOWN_SERVICE)
}

fn sizing(request: &ExportLogsServiceRequest) -> BatchSizing {
    fn text_len(kvs: &[KeyValue]) -> (usize, usize) {
        kvs.iter().fold((0, 0), |(keys, values), kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.len(),
                _ => 8,
            };
            (keys + kv.key.len(), values + value)
        })
    }
    let mut sizing = BatchSizing::default();
    for resource_logs in &request.resource_logs {
        let resource = resource_logs
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or_default();
        let (resource_keys, resource_values) = text_len(resource);
        for scope_logs in &resource_logs.scope_logs {
            let records = scope_logs.log_records.len();
            sizing.spans += records;
            sizing.resource_attributes += records * resource.len();
            sizing.resource_key_bytes += records * resource_keys;
            sizing.resource_value_bytes += records * resource_values;
            for record in &scope_logs.log_records {
                let (keys, values) = text_len(&record.attributes);
                sizing.span_attributes += record.attributes.len();
                sizing.span_key_bytes += keys;
                sizing.span_value_bytes += values;
            }
        }
    }
    sizing
}

/// Appends a decoded request (JSON, or protobuf through prost).
fn append_request(
    request: &ExportLogsServiceRequest,
    project: &str,
    budget: usize,
) -> Result<DecodedLogs, IngestError> {
    let mut builder = LogBatchBuilder::with_sizing(&sizing(request));
    let mut rejections = Rejections::of(LOG_RECORDS);
    let mut accepted = 0usize;
    let mut budget = Budget::of(budget, LOG_RECORDS);
    let mut scratch = LogScratch::default();
    let mut resource_text = String::new();
    let mut resource_pending: Vec<PendingAttr<'_>> = Vec::new();
    let mut resource_attrs_store: Vec<Attr<'static>> = Vec::new();

    for (resource_index, resource_logs) in request.resource_logs.iter().enumerate() {
        let resource_kvs = resource_logs
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or_default();
        resource_text.clear();
        resource_pending.clear();
        render_attributes(resource_kvs, &mut resource_text, &mut resource_pending)
            .map_err(nested_too_deep)?;
        let resource_bytes: usize = resource_pending.iter().map(PendingAttr::text_len).sum();
        let mut resource_attrs = recycle_attrs(std::mem::take(&mut resource_attrs_store));
        resolve(&resource_pending, &resource_text, &mut resource_attrs);
        let shared_resource = SharedAttributes::new(&resource_attrs);
        let service_name = service_name(resource_kvs);

        for (scope_index, scope_logs) in resource_logs.scope_logs.iter().enumerate() {
            let scope = scope_logs.scope.as_ref();
            let context = LogContext {
                project,
                service_name,
                resource_attributes: &shared_resource,
                scope_name: scope.map(|s| s.name.as_str()),
                scope_version: scope.map(|s| s.version.as_str()),
            };
            for (record_index, record) in scope_logs.log_records.iter().enumerate() {
                let valid = match validate(&LogIdentity::of(record)) {
                    Ok(valid) => valid,
                    Err(why) => {
                        rejections.add(resource_index, scope_index, record_index, &why);
                        continue;
                    }
                };
                scratch.clear();
                render_attributes(
                    &record.attributes,
                    &mut scratch.text,
                    &mut scratch.attributes,
                )
                .map_err(nested_too_deep)?;
                if record.body.as_ref().is_some_and(|b| b.value.is_some()) {
                    scratch.body = Some(
                        render_value(record.body.as_ref(), &mut scratch.text)
                            .map_err(nested_too_deep)?,
                    );
                }
                let text = LogText::of(record);
                budget.spend(resource_bytes, record_bytes(&text, &scratch))?;
                append_log(&mut builder, &scratch, &context, &text, &valid);
                accepted += 1;
            }
        }
        resource_attrs_store = recycle_attrs(resource_attrs);
    }

    Ok(DecodedLogs {
        batch: builder.finish(),
        accepted,
        rejected: rejections.count(),
        rejection_message: rejections.message(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity<'a>(
        trace_id: &'a [u8],
        span_id: &'a [u8],
        time: u64,
        observed: u64,
    ) -> LogIdentity<'a> {
        LogIdentity {
            trace_id,
            span_id,
            time_unix_nano: time,
            observed_time_unix_nano: observed,
        }
    }

    #[test]
    fn ids_are_optional_but_must_have_their_length() {
        let valid = validate(&identity(&[], &[], 5, 0)).unwrap();
        assert_eq!((valid.trace_id, valid.span_id), (None, None));
        let valid = validate(&identity(&[0; 16], &[0; 8], 5, 0)).unwrap();
        assert_eq!((valid.trace_id, valid.span_id), (None, None));
        let valid = validate(&identity(&[1; 16], &[2; 8], 5, 0)).unwrap();
        assert_eq!(
            (valid.trace_id, valid.span_id),
            (Some([1; 16]), Some([2; 8]))
        );
        let err = validate(&identity(&[1; 15], &[2; 8], 5, 0)).err().unwrap();
        assert_eq!(
            err.to_string(),
            "trace id must be empty or 16 bytes, got 15"
        );
        let err = validate(&identity(&[1; 16], &[2; 9], 5, 0)).err().unwrap();
        assert_eq!(err.to_string(), "span id must be empty or 8 bytes, got 9");
    }

    #[test]
    fn time_falls_back_to_the_observed_time() {
        let valid = validate(&identity(&[], &[], 5, 7)).unwrap();
        assert_eq!((valid.time_ns, valid.observed_time_ns), (5, Some(7)));
        let valid = validate(&identity(&[], &[], 0, 7)).unwrap();
        assert_eq!((valid.time_ns, valid.observed_time_ns), (7, Some(7)));
        let valid = validate(&identity(&[], &[], 0, 0)).unwrap();
        assert_eq!((valid.time_ns, valid.observed_time_ns), (0, None));
        let valid = validate(&identity(&[], &[], u64::MAX, u64::MAX)).unwrap();
        assert_eq!(
            (valid.time_ns, valid.observed_time_ns),
            (i64::MAX, Some(i64::MAX))
        );
    }

    #[test]
    fn responses_carry_partial_success_only_when_records_were_rejected() {
        assert_eq!(encode_logs_response(OtlpEncoding::Json, 0, None), b"{}");
        assert!(encode_logs_response(OtlpEncoding::Protobuf, 0, None).is_empty());
        let json = encode_logs_response(OtlpEncoding::Json, 2, Some("why"));
        let parsed: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({"partialSuccess": {"rejectedLogRecords": 2, "errorMessage": "why"}})
        );
        let protobuf = encode_logs_response(OtlpEncoding::Protobuf, 2, Some("why"));
        let decoded = ExportLogsServiceResponse::decode(protobuf.as_slice()).unwrap();
        assert_eq!(decoded, logs_response(2, Some("why")));
    }
}
