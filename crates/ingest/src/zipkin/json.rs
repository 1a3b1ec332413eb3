//! Zipkin v2 JSON: an array of span objects, read with serde one span at a
//! time; strings borrow from the body unless they hold escapes.
//!
//! Every field may be absent or `null` (the OpenTelemetry exporter sends
//! `"kind": null` for internal spans). Unknown fields are skipped; a field
//! given twice keeps its last value. A known field of the wrong JSON type
//! (a number for `traceId`, an object as a tag value) makes the request
//! malformed, so that a client with a bug hears about it; values of the right
//! type that are out of range only reject their span.

use std::borrow::Cow;
use std::fmt;

use lighttrace_model::{Attr, AttrType};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{Annotation, Endpoint, Id, Kind, Micros, Sink, Text, ZipkinSpan};
use crate::IngestError;

/// Reads `body`, a JSON array of spans, pushing each span into `sink`.
pub(super) fn decode(body: &[u8], sink: &mut Sink<'_>) -> Result<(), IngestError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => {
            return Err(IngestError::Malformed(
                "invalid Zipkin JSON: the body is empty".to_string(),
            ));
        }
        Some(b'[') => {}
        Some(_) => {
            return Err(IngestError::Malformed(
                "invalid Zipkin JSON: expected an array of Zipkin v2 spans".to_string(),
            ));
        }
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    SpansSeed(sink)
        .deserialize(&mut deserializer)
        .and_then(|()| deserializer.end())
        .map_err(malformed)
}

fn malformed(e: serde_json::Error) -> IngestError {
    let full = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    let message = full.strip_suffix(&position).unwrap_or(&full);
    if e.line() == 0 {
        IngestError::Malformed(format!("invalid Zipkin JSON: {message}"))
    } else {
        IngestError::Malformed(format!(
            "invalid Zipkin JSON at line {} column {}: {message}",
            e.line(),
            e.column()
        ))
    }
}

/// The top-level array: each element is pushed into the sink as it is read.
struct SpansSeed<'s, 'p>(&'s mut Sink<'p>);

impl<'de> DeserializeSeed<'de> for SpansSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for SpansSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of Zipkin v2 spans")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(span) = seq.next_element::<ZipkinSpan<'de>>()? {
            self.0.push(&span);
        }
        Ok(())
    }
}

impl<'de: 'r, 'r> Deserialize<'de> for Text<'r> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

impl<'de> Deserialize<'de> for Micros {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MicrosVisitor;
        impl Visitor<'_> for MicrosVisitor {
            type Value = Micros;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of microseconds")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Micros, E> {
                Ok(Micros::Value(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Micros, E> {
                Ok(u64::try_from(v).map_or(Micros::Negative, Micros::Value))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Micros, E> {
                // serde_json reads integers past u64::MAX, and exponents, as f64.
                Ok(if v < 0.0 {
                    Micros::Negative
                } else if v.fract() != 0.0 {
                    Micros::NotInteger
                } else if v < u64::MAX as f64 {
                    Micros::Value(v as u64)
                } else {
                    Micros::TooLarge
                })
            }
        }
        deserializer.deserialize_any(MicrosVisitor)
    }
}

fn kind_of(text: &str) -> Kind {
    const KINDS: [(&str, Kind); 4] = [
        ("CLIENT", Kind::Client),
        ("SERVER", Kind::Server),
        ("PRODUCER", Kind::Producer),
        ("CONSUMER", Kind::Consumer),
    ];
    KINDS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(text))
        .map_or(Kind::Other, |(_, kind)| *kind)
}

impl<'de: 'r, 'r> Deserialize<'de> for ZipkinSpan<'r> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SpanVisitor;
        impl<'de> Visitor<'de> for SpanVisitor {
            type Value = ZipkinSpan<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a Zipkin v2 span object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut span = ZipkinSpan::default();
                while let Some(key) = map.next_key::<Text<'de>>()? {
                    match key.as_str() {
                        "traceId" => span.trace_id = map.next_value::<Option<Text>>()?.map(Id::Hex),
                        "id" => span.id = map.next_value::<Option<Text>>()?.map(Id::Hex),
                        "parentId" => {
                            span.parent_id = map.next_value::<Option<Text>>()?.map(Id::Hex)
                        }
                        "name" => span.name = map.next_value()?,
                        "kind" => {
                            span.kind = map
                                .next_value::<Option<Text>>()?
                                .map(|kind| kind_of(kind.as_str()))
                        }
                        "timestamp" => span.timestamp = map.next_value()?,
                        "duration" => span.duration = map.next_value()?,
                        "debug" => span.debug = map.next_value()?,
                        "shared" => span.shared = map.next_value()?,
                        "localEndpoint" => span.local_endpoint = map.next_value()?,
                        "remoteEndpoint" => span.remote_endpoint = map.next_value()?,
                        "annotations" => {
                            span.annotations = map
                                .next_value::<Option<Vec<Annotation>>>()?
                                .unwrap_or_default()
                        }
                        "tags" => {
                            span.tags = map.next_value::<Option<Tags>>()?.unwrap_or_default().0
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(span)
            }
        }
        deserializer.deserialize_map(SpanVisitor)
    }
}

impl<'de: 'r, 'r> Deserialize<'de> for Endpoint<'r> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EndpointVisitor;
        impl<'de> Visitor<'de> for EndpointVisitor {
            type Value = Endpoint<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a Zipkin endpoint object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut endpoint = Endpoint::default();
                while let Some(key) = map.next_key::<Text<'de>>()? {
                    match key.as_str() {
                        "serviceName" => endpoint.service_name = map.next_value()?,
                        "ipv4" => endpoint.ipv4 = map.next_value()?,
                        "ipv6" => endpoint.ipv6 = map.next_value()?,
                        "port" => endpoint.port = map.next_value()?,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(endpoint)
            }
        }
        deserializer.deserialize_map(EndpointVisitor)
    }
}

impl<'de: 'r, 'r> Deserialize<'de> for Annotation<'r> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AnnotationVisitor;
        impl<'de> Visitor<'de> for AnnotationVisitor {
            type Value = Annotation<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a Zipkin annotation object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut annotation = Annotation::default();
                while let Some(key) = map.next_key::<Text<'de>>()? {
                    match key.as_str() {
                        "timestamp" => annotation.timestamp = map.next_value()?,
                        "value" => annotation.value = map.next_value()?,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(annotation)
            }
        }
        deserializer.deserialize_map(AnnotationVisitor)
    }
}

/// The `tags` object: string values, and (leniently) numbers and booleans as
/// their JSON text; a `null` value is skipped.
#[derive(Default)]
struct Tags<'r>(Vec<(Text<'r>, Text<'r>)>);

/// A tag value as text.
struct TagValue<'r>(Text<'r>);

impl<'de: 'r, 'r> Deserialize<'de> for TagValue<'r> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TagValueVisitor;
        impl<'de> Visitor<'de> for TagValueVisitor {
            type Value = TagValue<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a tag value (a string)")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(TagValue(Text(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(TagValue(Text(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(TagValue(Text(Cow::Owned(v))))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(TagValue(Text(Cow::Borrowed(if v {
                    "true"
                } else {
                    "false"
                }))))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(TagValue(Text(Cow::Owned(v.to_string()))))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(TagValue(Text(Cow::Owned(v.to_string()))))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(TagValue(Text(Cow::Owned(v.to_string()))))
            }
        }
        deserializer.deserialize_any(TagValueVisitor)
    }
}

impl<'de: 'r, 'r> Deserialize<'de> for Tags<'r> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TagsVisitor;
        impl<'de> Visitor<'de> for TagsVisitor {
            type Value = Tags<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a tags object of string values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut tags = Vec::with_capacity(map.size_hint().unwrap_or(8).min(64));
                while let Some((key, value)) = map.next_entry::<Text<'de>, Option<TagValue>>()? {
                    if let Some(value) = value {
                        tags.push((key, value.0));
                    }
                }
                Ok(Tags(tags))
            }
        }
        deserializer.deserialize_map(TagsVisitor)
    }
}

/// An annotation value written the way the OpenTelemetry Zipkin exporters
/// write span events, `{"<event name>": {<attributes>}}` (exactly one member,
/// whose value is an object), as the event's name and attributes; `None` for
/// any other value, which is then the event's name as it is.
pub(super) fn unpack_event(value: &str) -> Option<(Cow<'_, str>, Vec<Attr<'_>>)> {
    let trimmed = value.trim_ascii();
    if !(trimmed.starts_with('{') && trimmed.ends_with('}')) {
        return None;
    }
    let mut deserializer = serde_json::Deserializer::from_str(trimmed);
    let event = OtelEvent::deserialize(&mut deserializer).ok()?;
    deserializer.end().ok()?;
    let mut attributes = event.attributes;
    // A stable sort keeps equal keys in the order sent; the last one wins.
    attributes.sort_by(|a, b| a.key.cmp(&b.key));
    let mut unique: Vec<Attr<'_>> = Vec::with_capacity(attributes.len());
    for attr in attributes {
        match unique.last_mut() {
            Some(last) if last.key == attr.key => *last = attr,
            _ => unique.push(attr),
        }
    }
    Some((event.name.0, unique))
}

struct OtelEvent<'r> {
    name: Text<'r>,
    attributes: Vec<Attr<'r>>,
}

impl<'de: 'r, 'r> Deserialize<'de> for OtelEvent<'r> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EventVisitor;
        impl<'de> Visitor<'de> for EventVisitor {
            type Value = OtelEvent<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("{\"<event name>\": {<attributes>}}")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let Some((name, EventAttributes(attributes))) = map.next_entry()? else {
                    return Err(de::Error::invalid_length(0, &self));
                };
                if map.next_key::<IgnoredAny>()?.is_some() {
                    return Err(de::Error::invalid_length(2, &self));
                }
                Ok(OtelEvent { name, attributes })
            }
        }
        deserializer.deserialize_map(EventVisitor)
    }
}

struct EventAttributes<'r>(Vec<Attr<'r>>);

impl<'de: 'r, 'r> Deserialize<'de> for EventAttributes<'r> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AttributesVisitor;
        impl<'de> Visitor<'de> for AttributesVisitor {
            type Value = EventAttributes<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of event attributes")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut attributes = Vec::new();
                while let Some((key, EventValue(value, ty))) =
                    map.next_entry::<Text<'de>, EventValue>()?
                {
                    attributes.push(Attr::typed(key.0, value, ty));
                }
                Ok(EventAttributes(attributes))
            }
        }
        deserializer.deserialize_map(AttributesVisitor)
    }
}

/// An event attribute's value as text with its type: strings, integers
/// (`int`), other numbers (`double`) and booleans (`bool`) as OTLP values
/// render; `null` as an empty string; arrays and objects as their JSON text.
struct EventValue<'r>(Cow<'r, str>, AttrType);

impl<'de: 'r, 'r> Deserialize<'de> for EventValue<'r> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ValueVisitor;
        impl<'de> Visitor<'de> for ValueVisitor {
            type Value = EventValue<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an attribute value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(EventValue(Cow::Borrowed(v), AttrType::String))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(EventValue(Cow::Owned(v.to_owned()), AttrType::String))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(EventValue(Cow::Owned(v), AttrType::String))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                let text = if v { "true" } else { "false" };
                Ok(EventValue(Cow::Borrowed(text), AttrType::Bool))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(EventValue(Cow::Owned(v.to_string()), AttrType::Int))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                // Past i64::MAX it is no OTLP int; keep the digits as text.
                let ty = if i64::try_from(v).is_ok() {
                    AttrType::Int
                } else {
                    AttrType::String
                };
                Ok(EventValue(Cow::Owned(v.to_string()), ty))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(EventValue(Cow::Owned(v.to_string()), AttrType::Double))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(EventValue(Cow::Borrowed(""), AttrType::String))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                let value =
                    serde_json::Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                Ok(EventValue(Cow::Owned(value.to_string()), AttrType::String))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let value =
                    serde_json::Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(EventValue(Cow::Owned(value.to_string()), AttrType::String))
            }
        }
        deserializer.deserialize_any(ValueVisitor)
    }
}
