//! Zipkin's proto3 `ListOfSpans` (`zipkin.proto`, package `zipkin.proto3`),
//! read in place with the crate's wire reader, one span at a time:
//!
//! ```text
//! message ListOfSpans { repeated Span spans = 1; }
//! message Span {
//!   bytes trace_id = 1;  bytes parent_id = 2;  bytes id = 3;
//!   Kind kind = 4;       // SPAN_KIND_UNSPECIFIED, CLIENT, SERVER, PRODUCER, CONSUMER
//!   string name = 5;     fixed64 timestamp = 6;  uint64 duration = 7;
//!   Endpoint local_endpoint = 8;  Endpoint remote_endpoint = 9;
//!   repeated Annotation annotations = 10;  map<string, string> tags = 11;
//!   bool debug = 12;  bool shared = 13;
//! }
//! message Endpoint { string service_name = 1; bytes ipv4 = 2; bytes ipv6 = 3; int32 port = 4; }
//! message Annotation { fixed64 timestamp = 1; string value = 2; }
//! ```
//!
//! As prost would: unknown fields are skipped, a repeated scalar keeps its
//! last value, an endpoint given twice is merged, a string that is not UTF-8
//! or a field of the wrong wire type makes the whole body malformed. proto3
//! has no "absent": a zero timestamp and empty ids read as missing, kind 0 as
//! no kind. IP addresses are rendered as text (`10.0.0.1`, `2001:db8::1`);
//! an address of another length than 4 / 16 bytes is dropped.

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::{Annotation, Endpoint, Id, Kind, Micros, Sink, Text, ZipkinSpan};
use crate::IngestError;
use crate::protobuf::wire::{RECURSION_LIMIT, Reader, WireError, WireResult};

fn malformed(e: WireError) -> IngestError {
    IngestError::Malformed(format!("invalid Zipkin protobuf: {e}"))
}

/// Reads `body`, a `ListOfSpans`, pushing each span into `sink`.
pub(super) fn decode(body: &[u8], sink: &mut Sink<'_>) -> Result<(), IngestError> {
    let ctx = RECURSION_LIMIT;
    let mut reader = Reader::new(body, "ListOfSpans");
    while let Some((tag, value)) = reader.next_field().map_err(malformed)? {
        match tag {
            1 => {
                let span = value
                    .message("ListOfSpans.spans", ctx)
                    .and_then(|bytes| read_span(bytes, ctx - 1))
                    .map_err(malformed)?;
                sink.push(&span);
            }
            _ => reader.skip_unknown(tag, value, ctx).map_err(malformed)?,
        }
    }
    Ok(())
}

fn text(s: &str) -> Option<Text<'_>> {
    Some(Text(Cow::Borrowed(s)))
}

fn read_span(body: &[u8], ctx: u32) -> WireResult<ZipkinSpan<'_>> {
    let mut span = ZipkinSpan::default();
    let mut reader = Reader::new(body, "Span");
    while let Some((tag, value)) = reader.next_field()? {
        match tag {
            1 => span.trace_id = Some(Id::Bytes(value.bytes("Span.trace_id")?)),
            2 => span.parent_id = Some(Id::Bytes(value.bytes("Span.parent_id")?)),
            3 => span.id = Some(Id::Bytes(value.bytes("Span.id")?)),
            // An enum is an int32 on the wire, truncated as prost does.
            4 => {
                span.kind = match value.varint("Span.kind")? as i32 {
                    0 => None,
                    1 => Some(Kind::Client),
                    2 => Some(Kind::Server),
                    3 => Some(Kind::Producer),
                    4 => Some(Kind::Consumer),
                    _ => Some(Kind::Other),
                }
            }
            5 => span.name = text(value.string("Span.name")?),
            6 => span.timestamp = Some(Micros::Value(value.fixed64("Span.timestamp")?)),
            7 => span.duration = Some(Micros::Value(value.varint("Span.duration")?)),
            8 => {
                let body = value.message("Span.local_endpoint", ctx)?;
                read_endpoint(body, ctx - 1, span.local_endpoint.get_or_insert_default())?;
            }
            9 => {
                let body = value.message("Span.remote_endpoint", ctx)?;
                read_endpoint(body, ctx - 1, span.remote_endpoint.get_or_insert_default())?;
            }
            10 => {
                let body = value.message("Span.annotations", ctx)?;
                span.annotations.push(read_annotation(body, ctx - 1)?);
            }
            11 => {
                let body = value.message("Span.tags", ctx)?;
                span.tags.push(read_tag(body, ctx - 1)?);
            }
            12 => span.debug = Some(value.varint("Span.debug")? != 0),
            13 => span.shared = Some(value.varint("Span.shared")? != 0),
            _ => reader.skip_unknown(tag, value, ctx)?,
        }
    }
    Ok(span)
}

fn read_endpoint<'r>(body: &'r [u8], ctx: u32, endpoint: &mut Endpoint<'r>) -> WireResult<()> {
    let mut reader = Reader::new(body, "Endpoint");
    while let Some((tag, value)) = reader.next_field()? {
        match tag {
            1 => endpoint.service_name = text(value.string("Endpoint.service_name")?),
            2 => {
                let bytes = value.bytes("Endpoint.ipv4")?;
                endpoint.ipv4 = <[u8; 4]>::try_from(bytes)
                    .ok()
                    .map(|ip| Text(Cow::Owned(Ipv4Addr::from(ip).to_string())));
            }
            3 => {
                let bytes = value.bytes("Endpoint.ipv6")?;
                endpoint.ipv6 = <[u8; 16]>::try_from(bytes)
                    .ok()
                    .map(|ip| Text(Cow::Owned(Ipv6Addr::from(ip).to_string())));
            }
            4 => endpoint.port = Some(i64::from(value.varint("Endpoint.port")? as i32)),
            _ => reader.skip_unknown(tag, value, ctx)?,
        }
    }
    Ok(())
}

fn read_annotation(body: &[u8], ctx: u32) -> WireResult<Annotation<'_>> {
    let mut annotation = Annotation::default();
    let mut reader = Reader::new(body, "Annotation");
    while let Some((tag, value)) = reader.next_field()? {
        match tag {
            1 => annotation.timestamp = Some(Micros::Value(value.fixed64("Annotation.timestamp")?)),
            2 => annotation.value = text(value.string("Annotation.value")?),
            _ => reader.skip_unknown(tag, value, ctx)?,
        }
    }
    // proto3 writes no empty string: an annotation without one has the value "".
    annotation.value.get_or_insert(Text(Cow::Borrowed("")));
    Ok(annotation)
}

/// One `map<string, string>` entry; a missing key or value is "", as in proto3.
fn read_tag(body: &[u8], ctx: u32) -> WireResult<(Text<'_>, Text<'_>)> {
    let (mut key, mut value) = ("", "");
    let mut reader = Reader::new(body, "Span.TagsEntry");
    while let Some((tag, field)) = reader.next_field()? {
        match tag {
            1 => key = field.string("Span.TagsEntry.key")?,
            2 => value = field.string("Span.TagsEntry.value")?,
            _ => reader.skip_unknown(tag, field, ctx)?,
        }
    }
    Ok((Text(Cow::Borrowed(key)), Text(Cow::Borrowed(value))))
}
