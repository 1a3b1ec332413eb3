//! Zipkin v2 spans (JSON, or proto3 `ListOfSpans`) into a `spans` batch.
//!
//! Both encodings are read into the same borrowed [`ZipkinSpan`], one span at
//! a time (JSON with serde, strings borrowed from the body unless they hold
//! escapes; protobuf with the crate's in-place wire reader), and each span is
//! checked and appended to the [`SpanBatchBuilder`] before the next is read.
//! The mapping is documented in the crate docs.

mod json;
mod proto;

use std::borrow::Cow;
use std::fmt;

use lighttrace_model::{
    Attr, AttrType, BatchSizing, EventRecord, Source, SpanBatchBuilder, SpanKind, SpanRecord,
    StatusCode,
};

use crate::otlp::{Rejections, UNKNOWN_SERVICE};
use crate::{DecodedSpans, IngestError};

/// The encoding of a Zipkin v2 request body (`POST /api/v2/spans`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ZipkinEncoding {
    /// `application/json`: a JSON array of Zipkin v2 spans.
    Json,
    /// `application/x-protobuf`: a proto3 `zipkin.proto3.ListOfSpans`.
    Protobuf,
}

/// Decodes a Zipkin v2 request (`body` already decompressed) into a `spans` batch.
///
/// Spans that fail validation are counted in [`DecodedSpans::rejected`] and
/// left out; the call fails only when the body as a whole is not a Zipkin v2
/// span list (not JSON / protobuf, not an array, a field of the wrong type).
pub fn decode_zipkin_spans(
    body: &[u8],
    encoding: ZipkinEncoding,
    project: &str,
) -> Result<DecodedSpans, IngestError> {
    let mut sink = Sink {
        project,
        builder: SpanBatchBuilder::with_sizing(&estimate_size(body, encoding)),
        rejections: Rejections::default(),
        accepted: 0,
        index: 0,
    };
    match encoding {
        ZipkinEncoding::Json => json::decode(body, &mut sink)?,
        ZipkinEncoding::Protobuf => proto::decode(body, &mut sink)?,
    }
    Ok(DecodedSpans {
        batch: sink.builder.finish(),
        accepted: sink.accepted,
        rejected: sink.rejections.count(),
        rejection_message: sink.rejections.message(),
    })
}

/// About how many spans and tags the body holds, to size the Arrow buffers
/// once. JSON: the occurrences of `"traceId"` (a key every span has) and of
/// `":"` pairs; protobuf: the body's size over a typical span's.
fn estimate_size(body: &[u8], encoding: ZipkinEncoding) -> BatchSizing {
    const TYPICAL_PROTOBUF_SPAN_BYTES: usize = 400;
    const TYPICAL_TAGS: usize = 12;
    let spans = match encoding {
        // At most one per 40 bytes: `{"traceId":"1","id":"1","timestamp":1}`
        // is about the shortest span there is.
        ZipkinEncoding::Json => count(body, b"\"traceId\"").min(body.len() / 40 + 1),
        ZipkinEncoding::Protobuf => body.len() / TYPICAL_PROTOBUF_SPAN_BYTES + 1,
    };
    // Keys and values of tags make up most of a body that is not ids.
    let tags = spans * TYPICAL_TAGS;
    let tag_bytes = body.len().saturating_sub(spans * 200) / 2;
    BatchSizing {
        spans,
        span_attributes: tags,
        span_key_bytes: tag_bytes / 2,
        span_value_bytes: tag_bytes / 2,
        resource_attributes: spans,
        resource_key_bytes: spans * "service.name".len(),
        resource_value_bytes: spans * 16,
    }
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

/// Where decoded spans go: validated and appended one by one.
pub(crate) struct Sink<'p> {
    project: &'p str,
    builder: SpanBatchBuilder,
    rejections: Rejections,
    accepted: usize,
    /// The position of the next span in the request.
    index: usize,
}

impl Sink<'_> {
    /// Appends `span`, or counts it as rejected.
    pub(crate) fn push(&mut self, span: &ZipkinSpan<'_>) {
        match append(&mut self.builder, self.project, span) {
            Ok(()) => self.accepted += 1,
            Err(why) => self.rejections.add_span(self.index, &why),
        }
        self.index += 1;
    }
}

/// Text from the body: borrowed, or owned when JSON unescaping changed it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Text<'r>(pub Cow<'r, str>);

impl Text<'_> {
    fn as_str(&self) -> &str {
        &self.0
    }
}

/// A trace or span id as sent: hex text (JSON) or raw bytes (protobuf).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Id<'r> {
    Hex(Text<'r>),
    Bytes(&'r [u8]),
}

/// `kind` as sent; absent is `None` in [`ZipkinSpan::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Client,
    Server,
    Producer,
    Consumer,
    /// A value Zipkin does not define.
    Other,
}

/// A time or duration in microseconds, as sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Micros {
    Value(u64),
    Negative,
    NotInteger,
    /// More than `u64::MAX`.
    TooLarge,
}

/// `localEndpoint` / `remoteEndpoint`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Endpoint<'r> {
    pub service_name: Option<Text<'r>>,
    pub ipv4: Option<Text<'r>>,
    pub ipv6: Option<Text<'r>>,
    pub port: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Annotation<'r> {
    pub timestamp: Option<Micros>,
    pub value: Option<Text<'r>>,
}

/// One Zipkin v2 span as sent, before validation.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ZipkinSpan<'r> {
    pub trace_id: Option<Id<'r>>,
    pub id: Option<Id<'r>>,
    pub parent_id: Option<Id<'r>>,
    pub name: Option<Text<'r>>,
    pub kind: Option<Kind>,
    pub timestamp: Option<Micros>,
    pub duration: Option<Micros>,
    pub debug: Option<bool>,
    pub shared: Option<bool>,
    pub local_endpoint: Option<Endpoint<'r>>,
    pub remote_endpoint: Option<Endpoint<'r>>,
    pub annotations: Vec<Annotation<'r>>,
    /// In the order sent; duplicate keys are possible (the last one wins).
    pub tags: Vec<(Text<'r>, Text<'r>)>,
}

/// Why one span was left out.
#[derive(Debug, Clone, PartialEq)]
enum Rejection {
    MissingId(&'static str),
    BadHexId {
        what: &'static str,
        max_digits: usize,
        text: String,
    },
    IdLength {
        what: &'static str,
        got: usize,
    },
    ZeroId(&'static str),
    MissingTimestamp,
    BadTime {
        what: &'static str,
        problem: &'static str,
    },
    EndOutOfRange,
    Annotation {
        index: usize,
        problem: &'static str,
    },
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::MissingId(what) => write!(f, "{what} is missing"),
            Rejection::BadHexId {
                what,
                max_digits,
                text,
            } => write!(
                f,
                "{what} must be 1 to {max_digits} hex digits, got {text:?}"
            ),
            Rejection::IdLength { what, got } => {
                write!(f, "{what} has {got} bytes")
            }
            Rejection::ZeroId(what) => write!(f, "{what} must not be all zeros"),
            Rejection::MissingTimestamp => f.write_str("timestamp is missing or 0"),
            Rejection::BadTime { what, problem } => write!(f, "{what} {problem}"),
            Rejection::EndOutOfRange => f.write_str("timestamp + duration is after the year 2262"),
            Rejection::Annotation { index, problem } => {
                write!(f, "annotation {index} {problem}")
            }
        }
    }
}

/// An id of `N` bytes: hex digits left-padded with zeros, or 8 or `N` raw
/// bytes (8 left-padded, a 64-bit Zipkin trace id); never all zeros.
fn parse_id<const N: usize>(id: &Id<'_>, what: &'static str) -> Result<[u8; N], Rejection> {
    let mut out = [0u8; N];
    match id {
        Id::Hex(text) => {
            let text = text.as_str().as_bytes();
            let bad = || Rejection::BadHexId {
                what,
                max_digits: 2 * N,
                text: String::from_utf8_lossy(&text[..text.len().min(64)]).into_owned(),
            };
            if text.is_empty() || text.len() > 2 * N {
                return Err(bad());
            }
            // Digits are read from the right: the last one is the low nibble
            // of the last byte.
            for (i, &digit) in text.iter().rev().enumerate() {
                let nibble = match digit {
                    b'0'..=b'9' => digit - b'0',
                    b'a'..=b'f' => digit - b'a' + 10,
                    b'A'..=b'F' => digit - b'A' + 10,
                    _ => return Err(bad()),
                };
                out[N - 1 - i / 2] |= nibble << (4 * (i % 2));
            }
        }
        Id::Bytes(bytes) => {
            if bytes.len() != N && bytes.len() != 8 {
                return Err(Rejection::IdLength {
                    what,
                    got: bytes.len(),
                });
            }
            out[N - bytes.len()..].copy_from_slice(bytes);
        }
    }
    if out == [0u8; N] {
        return Err(Rejection::ZeroId(what));
    }
    Ok(out)
}

/// The parent of a span: `None` for a root (absent, empty or all zeros).
fn parse_parent(id: Option<&Id<'_>>) -> Result<Option<[u8; 8]>, Rejection> {
    match id {
        None => Ok(None),
        Some(Id::Hex(text)) if text.0.is_empty() => Ok(None),
        Some(Id::Bytes([])) => Ok(None),
        Some(id) => match parse_id::<8>(id, "parentId") {
            Ok(parent) => Ok(Some(parent)),
            Err(Rejection::ZeroId(_)) => Ok(None),
            Err(other) => Err(other),
        },
    }
}

/// Microseconds to nanoseconds since the epoch, as an Arrow timestamp holds them.
fn nanos(micros: Micros, what: &'static str) -> Result<i64, Rejection> {
    let problem = match micros {
        Micros::Value(us) => match us.checked_mul(1000).map(i64::try_from) {
            Some(Ok(ns)) => return Ok(ns),
            _ => "is after the year 2262",
        },
        Micros::Negative => "is negative",
        Micros::NotInteger => "is not a whole number of microseconds",
        Micros::TooLarge => "is after the year 2262",
    };
    Err(Rejection::BadTime { what, problem })
}

const STATUS_CODE_TAG: &str = "otel.status_code";
const STATUS_DESCRIPTION_TAG: &str = "otel.status_description";
const ERROR_TAG: &str = "error";

/// The status from the tags: `otel.status_code` when it is `OK`, `ERROR` or
/// `UNSET`, else error when there is an `error` tag; the message is the
/// `error` tag's value, else `otel.status_description`, when not empty.
fn status<'t>(tag: impl Fn(&str) -> Option<&'t str>) -> (StatusCode, Option<&'t str>) {
    let code = match tag(STATUS_CODE_TAG) {
        Some(code) if code.eq_ignore_ascii_case("OK") => Some(StatusCode::Ok),
        Some(code) if code.eq_ignore_ascii_case("ERROR") => Some(StatusCode::Error),
        Some(code) if code.eq_ignore_ascii_case("UNSET") => Some(StatusCode::Unset),
        _ => None,
    };
    let code = code.unwrap_or(if tag(ERROR_TAG).is_some() {
        StatusCode::Error
    } else {
        StatusCode::Unset
    });
    let message = match code {
        StatusCode::Error => tag(ERROR_TAG)
            .filter(|m| !m.is_empty())
            .or_else(|| tag(STATUS_DESCRIPTION_TAG).filter(|m| !m.is_empty())),
        _ => None,
    };
    (code, message)
}

/// Attribute keys for what a span's endpoints and flags say (semantic
/// convention names where one fits); a tag of the same key wins.
mod keys {
    pub const LOCAL_ADDRESS: &str = "network.local.address";
    pub const LOCAL_IPV6: &str = "zipkin.local_endpoint.ipv6";
    pub const LOCAL_PORT: &str = "network.local.port";
    pub const PEER_SERVICE: &str = "peer.service";
    pub const PEER_ADDRESS: &str = "network.peer.address";
    pub const PEER_IPV6: &str = "zipkin.remote_endpoint.ipv6";
    pub const PEER_PORT: &str = "network.peer.port";
    pub const DEBUG: &str = "zipkin.debug";
    pub const SHARED: &str = "zipkin.shared";
}

/// Appends the attributes an endpoint stands for to `out`, each unless `taken`.
fn endpoint_attributes<'a>(
    endpoint: &'a Endpoint<'_>,
    [address_key, ipv6_key, port_key]: [&'static str; 3],
    taken: &impl Fn(&str) -> bool,
    out: &mut Vec<Attr<'a>>,
) {
    let non_empty = |text: &'a Option<Text<'_>>| {
        text.as_ref()
            .map(|t| t.as_str())
            .filter(|text| !text.is_empty())
    };
    let mut push = |key: &'static str, value: Cow<'a, str>, ty: AttrType| {
        if !taken(key) {
            out.push(Attr::typed(key, value, ty));
        }
    };
    match (non_empty(&endpoint.ipv4), non_empty(&endpoint.ipv6)) {
        (Some(ipv4), ipv6) => {
            push(address_key, ipv4.into(), AttrType::String);
            if let Some(ipv6) = ipv6 {
                push(ipv6_key, ipv6.into(), AttrType::String);
            }
        }
        (None, Some(ipv6)) => push(address_key, ipv6.into(), AttrType::String),
        (None, None) => {}
    }
    if let Some(port) = endpoint.port.filter(|port| (1..=65535).contains(port)) {
        push(port_key, port.to_string().into(), AttrType::Int);
    }
}

/// `(key, value)` pairs sorted by key, the last of equal keys kept.
fn sorted_unique<'t>(mut pairs: Vec<(&'t str, &'t str)>) -> Vec<(&'t str, &'t str)> {
    // A stable sort keeps equal keys in the order sent.
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let mut unique: Vec<(&str, &str)> = Vec::with_capacity(pairs.len());
    for pair in pairs {
        match unique.last_mut() {
            Some(last) if last.0 == pair.0 => *last = pair,
            _ => unique.push(pair),
        }
    }
    unique
}

/// Checks `span` and appends it; nothing is appended when it is rejected.
fn append(
    builder: &mut SpanBatchBuilder,
    project: &str,
    span: &ZipkinSpan<'_>,
) -> Result<(), Rejection> {
    let trace_id = parse_id::<16>(
        span.trace_id
            .as_ref()
            .ok_or(Rejection::MissingId("traceId"))?,
        "traceId",
    )?;
    let span_id = parse_id::<8>(span.id.as_ref().ok_or(Rejection::MissingId("id"))?, "id")?;
    let parent_span_id = parse_parent(span.parent_id.as_ref())?;
    let start_time_ns = match span.timestamp {
        None | Some(Micros::Value(0)) => return Err(Rejection::MissingTimestamp),
        Some(micros) => nanos(micros, "timestamp")?,
    };
    let duration_ns = match span.duration {
        None => 0,
        Some(micros) => nanos(micros, "duration")?,
    };
    let end_time_ns = start_time_ns
        .checked_add(duration_ns)
        .ok_or(Rejection::EndOutOfRange)?;

    let mut events = Vec::with_capacity(span.annotations.len());
    for (index, annotation) in span.annotations.iter().enumerate() {
        let time_ns = match annotation.timestamp {
            None | Some(Micros::Value(0)) => {
                return Err(Rejection::Annotation {
                    index,
                    problem: "has no timestamp",
                });
            }
            Some(micros) => {
                nanos(micros, "annotation timestamp").map_err(|_| Rejection::Annotation {
                    index,
                    problem: "has a timestamp that is not microseconds before 2262",
                })?
            }
        };
        let value = annotation
            .value
            .as_ref()
            .ok_or(Rejection::Annotation {
                index,
                problem: "has no value",
            })?
            .as_str();
        events.push(match json::unpack_event(value) {
            Some((name, attributes)) => EventRecord {
                time_ns,
                name,
                attributes,
            },
            None => EventRecord {
                time_ns,
                name: value.into(),
                attributes: Vec::new(),
            },
        });
    }

    let tags = sorted_unique(
        span.tags
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect(),
    );
    let tag = |key: &str| {
        tags.binary_search_by(|(k, _)| (*k).cmp(key))
            .ok()
            .map(|i| tags[i].1)
    };
    let taken = |key: &str| tag(key).is_some();
    let (status_code, status_message) = status(tag);

    let mut attributes: Vec<Attr<'_>> = Vec::with_capacity(tags.len() + 6);
    attributes.extend(tags.iter().map(|&(key, value)| Attr::string(key, value)));
    if let Some(local) = &span.local_endpoint {
        endpoint_attributes(
            local,
            [keys::LOCAL_ADDRESS, keys::LOCAL_IPV6, keys::LOCAL_PORT],
            &taken,
            &mut attributes,
        );
    }
    if let Some(remote) = &span.remote_endpoint {
        if let Some(peer) = remote
            .service_name
            .as_ref()
            .filter(|name| !name.0.is_empty())
            && !taken(keys::PEER_SERVICE)
        {
            attributes.push(Attr::string(keys::PEER_SERVICE, peer.as_str()));
        }
        endpoint_attributes(
            remote,
            [keys::PEER_ADDRESS, keys::PEER_IPV6, keys::PEER_PORT],
            &taken,
            &mut attributes,
        );
    }
    for (key, flag) in [(keys::DEBUG, span.debug), (keys::SHARED, span.shared)] {
        if let Some(flag) = flag
            && !taken(key)
        {
            let value = if flag { "true" } else { "false" };
            attributes.push(Attr::typed(key, value, AttrType::Bool));
        }
    }

    let service_name = span
        .local_endpoint
        .as_ref()
        .and_then(|local| local.service_name.as_ref())
        .map(Text::as_str)
        .filter(|name| !name.is_empty());
    let resource = service_name.map(|name| Attr::string("service.name", name));
    builder.append(&SpanRecord {
        project,
        trace_id,
        span_id,
        parent_span_id,
        trace_state: None,
        service_name: service_name.unwrap_or(UNKNOWN_SERVICE),
        name: span.name.as_ref().map_or("", Text::as_str),
        kind: match span.kind {
            None => SpanKind::Internal,
            Some(Kind::Client) => SpanKind::Client,
            Some(Kind::Server) => SpanKind::Server,
            Some(Kind::Producer) => SpanKind::Producer,
            Some(Kind::Consumer) => SpanKind::Consumer,
            Some(Kind::Other) => SpanKind::Unspecified,
        },
        start_time_ns,
        end_time_ns,
        status_code,
        status_message,
        attributes: &attributes,
        resource_attributes: resource.as_slice(),
        scope_name: tag("otel.scope.name").or_else(|| tag("otel.library.name")),
        scope_version: tag("otel.scope.version").or_else(|| tag("otel.library.version")),
        events: &events,
        links: &[],
        source: Source::Zipkin,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Id<'_> {
        Id::Hex(Text(text.into()))
    }

    #[test]
    fn hex_ids_are_left_padded() {
        assert_eq!(
            parse_id::<16>(&hex("463ac35c9f6413ad"), "traceId").unwrap(),
            [
                0, 0, 0, 0, 0, 0, 0, 0, 0x46, 0x3a, 0xc3, 0x5c, 0x9f, 0x64, 0x13, 0xad
            ]
        );
        assert_eq!(
            parse_id::<8>(&hex("ABC"), "id").unwrap(),
            [0, 0, 0, 0, 0, 0, 0x0a, 0xbc]
        );
        assert_eq!(
            parse_id::<16>(&Id::Bytes(&[1; 8]), "traceId").unwrap()[..8],
            [0; 8]
        );
    }

    #[test]
    fn bad_ids_are_rejected_with_their_reason() {
        for (text, why) in [
            ("", "traceId must be 1 to 32 hex digits"),
            ("xyz", "traceId must be 1 to 32 hex digits"),
            ("+1", "traceId must be 1 to 32 hex digits"),
            ("000", "traceId must not be all zeros"),
        ] {
            let err = parse_id::<16>(&hex(text), "traceId").unwrap_err();
            assert!(err.to_string().starts_with(why), "{text:?}: {err}");
        }
        let too_long = "1".repeat(33);
        assert!(parse_id::<16>(&hex(&too_long), "traceId").is_err());
        assert!(parse_id::<8>(&hex(&"1".repeat(17)), "id").is_err());
        assert!(parse_id::<16>(&Id::Bytes(&[1; 12]), "traceId").is_err());
        assert_eq!(parse_parent(Some(&hex("0000000000000000"))), Ok(None));
        assert_eq!(parse_parent(Some(&hex(""))), Ok(None));
    }

    #[test]
    fn times_out_of_range_are_rejected() {
        assert_eq!(nanos(Micros::Value(5), "t"), Ok(5_000));
        assert!(nanos(Micros::Value(u64::MAX / 999), "t").is_err());
        assert!(nanos(Micros::Value(i64::MAX as u64 / 1000 + 1), "t").is_err());
        assert!(nanos(Micros::Negative, "t").is_err());
    }

    #[test]
    fn status_follows_otel_status_code_then_the_error_tag() {
        let tags = |pairs: &'static [(&'static str, &'static str)]| {
            move |key: &str| pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
        };
        assert_eq!(status(tags(&[])), (StatusCode::Unset, None));
        assert_eq!(
            status(tags(&[("error", "boom")])),
            (StatusCode::Error, Some("boom"))
        );
        assert_eq!(status(tags(&[("error", "")])), (StatusCode::Error, None));
        assert_eq!(
            status(tags(&[("otel.status_code", "OK"), ("error", "x")])),
            (StatusCode::Ok, None)
        );
        assert_eq!(
            status(tags(&[
                ("otel.status_code", "ERROR"),
                ("otel.status_description", "d")
            ])),
            (StatusCode::Error, Some("d"))
        );
        assert_eq!(
            status(tags(&[("otel.status_code", "weird")])),
            (StatusCode::Unset, None)
        );
    }

    #[test]
    fn duplicate_tags_keep_the_last_value() {
        let pairs = vec![("b", "1"), ("a", "2"), ("b", "3"), ("a", "4"), ("c", "5")];
        assert_eq!(
            sorted_unique(pairs),
            vec![("a", "4"), ("b", "3"), ("c", "5")]
        );
    }
}
