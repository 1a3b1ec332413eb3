//! The parts of Sentry's event and span payloads that LightTrace reads,
//! deserialized with borrowed strings where the JSON has no escapes.
//!
//! Unknown fields are skipped. A known field of the wrong JSON type makes the
//! item malformed, except timestamps and ids, which are checked span by span
//! so that one bad span does not cost the rest of the envelope.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::envelope::Sdk;

/// A JSON object as `(key, value)` pairs in the order sent. Tags may also be
/// sent as an array of `[key, value]` pairs, which Sentry accepts too.
#[derive(Debug)]
pub(crate) struct Pairs<'a, V>(pub Vec<(Cow<'a, str>, V)>);

impl<V> Default for Pairs<'_, V> {
    fn default() -> Self {
        Pairs(Vec::new())
    }
}

impl<'de: 'a, 'a, V: Deserialize<'de>> Deserialize<'de> for Pairs<'a, V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PairsVisitor<'a, V>(PhantomData<(&'a (), V)>);

        impl<'de: 'a, 'a, V: Deserialize<'de>> Visitor<'de> for PairsVisitor<'a, V> {
            type Value = Pairs<'a, V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object, or an array of [key, value] pairs")
            }

            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Pairs::default())
            }

            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
                while let Some(key) = map.next_key::<BorrowedStr<'a>>()? {
                    pairs.push((key.0, map.next_value()?));
                }
                Ok(Pairs(pairs))
            }

            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
                let mut pairs = Vec::new();
                while let Some((key, value)) = seq.next_element::<(BorrowedStr<'a>, V)>()? {
                    pairs.push((key.0, value));
                }
                Ok(Pairs(pairs))
            }
        }

        deserializer.deserialize_any(PairsVisitor(PhantomData))
    }
}

/// A string borrowed from the body when it has no escapes.
pub(crate) struct BorrowedStr<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for BorrowedStr<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor<'a>(PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for StrVisitor<'a> {
            type Value = BorrowedStr<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Owned(v)))
            }
        }

        deserializer.deserialize_str(StrVisitor(PhantomData))
    }
}

/// A timestamp as sent: float (or integer) seconds since the Unix epoch, or an
/// RFC 3339 string. Anything else is kept as the reason it is unusable, so
/// that only its span is rejected.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Time {
    Nanos(i64),
    Invalid(&'static str),
}

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TimeVisitor;

        impl<'de> Visitor<'de> for TimeVisitor {
            type Value = Time;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a timestamp")
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Time, E> {
                Ok(seconds_to_time(v))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Time, E> {
                Ok(seconds_to_time(v as f64))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Time, E> {
                Ok(seconds_to_time(v as f64))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Time, E> {
                Ok(parse_time_text(v))
            }

            fn visit_unit<E: de::Error>(self) -> Result<Time, E> {
                Ok(Time::Invalid("is null"))
            }

            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Time, E> {
                Ok(Time::Invalid("is not a number or an RFC 3339 string"))
            }

            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Time, S::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Time::Invalid("is not a number or an RFC 3339 string"))
            }

            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Time, M::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Time::Invalid("is not a number or an RFC 3339 string"))
            }
        }

        deserializer.deserialize_any(TimeVisitor)
    }
}

/// Seconds (with a fraction) to nanoseconds, rounded to the microsecond: an
/// `f64` of today's epoch seconds holds about that much precision, and Sentry
/// SDKs send microseconds at best.
pub(crate) fn seconds_to_time(seconds: f64) -> Time {
    if !seconds.is_finite() {
        return Time::Invalid("is not a finite number");
    }
    if seconds < 0.0 {
        return Time::Invalid("is before 1970");
    }
    // i64 nanoseconds end in April 2262.
    if seconds >= 9_223_372_036.0 {
        return Time::Invalid("is after the year 2262");
    }
    let micros = (seconds * 1e6).round() as i64;
    Time::Nanos(micros * 1000)
}

/// An RFC 3339 timestamp (`2024-05-01T12:00:00.123456Z`, any offset); one
/// without an offset is taken as UTC, and a number in a string as seconds.
pub(crate) fn parse_time_text(text: &str) -> Time {
    let text = text.trim();
    let nanos = if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        time.timestamp_nanos_opt()
    } else if let Ok(time) = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f") {
        time.and_utc().timestamp_nanos_opt()
    } else if let Ok(seconds) = text.parse::<f64>() {
        return seconds_to_time(seconds);
    } else {
        return Time::Invalid("is not an RFC 3339 timestamp");
    };
    match nanos {
        Some(n) if n >= 0 => Time::Nanos(n),
        Some(_) => Time::Invalid("is before 1970"),
        None => Time::Invalid("is after the year 2262"),
    }
}

/// A string field that may also be sent as another JSON scalar (some SDKs send
/// numbers as ids or statuses); objects and arrays are refused.
#[derive(Debug, Clone)]
pub(crate) struct Text<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor<'a>(PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for TextVisitor<'a> {
            type Value = Text<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(if v { "true" } else { "false" })))
            }
        }

        deserializer.deserialize_any(TextVisitor(PhantomData))
    }
}

impl Text<'_> {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// `Option<Text>` as `Option<&str>`.
pub(crate) fn text<'s>(field: &'s Option<Text<'_>>) -> Option<&'s str> {
    field.as_ref().map(Text::as_str)
}

/// `contexts.trace` of a transaction or an error event.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct TraceContext<'a> {
    #[serde(borrow, default)]
    pub trace_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub span_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub parent_span_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub op: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub status: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub origin: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub description: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub data: Option<Pairs<'a, Value>>,
}

/// `contexts.otel` (sent by the OpenTelemetry-based SDKs, `@sentry/node`).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct OtelContext<'a> {
    #[serde(borrow, default)]
    pub resource: Option<Pairs<'a, Value>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Contexts<'a> {
    #[serde(borrow, default)]
    pub trace: Option<TraceContext<'a>>,
    #[serde(borrow, default)]
    pub otel: Option<OtelContext<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct TransactionInfo<'a> {
    #[serde(borrow, default)]
    pub source: Option<Text<'a>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Measurement<'a> {
    #[serde(default)]
    pub value: Option<f64>,
    #[serde(borrow, default)]
    pub unit: Option<Text<'a>>,
}

/// A span of a transaction's `spans`, or a standalone (v1) `span` item.
#[derive(Debug, Deserialize)]
pub(crate) struct SpanJson<'a> {
    #[serde(borrow, default)]
    pub trace_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub span_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub parent_span_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub op: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub description: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub status: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub origin: Option<Text<'a>>,
    #[serde(default)]
    pub start_timestamp: Option<Time>,
    #[serde(default)]
    pub timestamp: Option<Time>,
    #[serde(borrow, default)]
    pub tags: Option<Pairs<'a, Value>>,
    #[serde(borrow, default)]
    pub data: Option<Pairs<'a, Value>>,
}

/// An `event` or `transaction` item's payload.
#[derive(Debug, Deserialize)]
pub(crate) struct EventJson<'a> {
    #[serde(borrow, default)]
    pub event_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub transaction: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub transaction_info: Option<TransactionInfo<'a>>,
    #[serde(default)]
    pub start_timestamp: Option<Time>,
    #[serde(default)]
    pub timestamp: Option<Time>,
    #[serde(borrow, default)]
    pub contexts: Option<Contexts<'a>>,
    #[serde(borrow, default)]
    pub spans: Option<Vec<SpanJson<'a>>>,
    #[serde(borrow, default)]
    pub tags: Option<Pairs<'a, Value>>,
    #[serde(borrow, default)]
    pub measurements: Option<Pairs<'a, Measurement<'a>>>,
    #[serde(borrow, default)]
    pub release: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub environment: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub platform: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub sdk: Option<Sdk<'a>>,
    // Error events.
    #[serde(borrow, default)]
    pub level: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub exception: Option<Exceptions<'a>>,
    #[serde(borrow, default)]
    pub message: Option<Message<'a>>,
    #[serde(borrow, default)]
    pub logentry: Option<Message<'a>>,
}

/// `exception`: `{"values": [...]}`, or the list itself (an older form).
#[derive(Debug)]
pub(crate) struct Exceptions<'a>(pub Vec<ExceptionJson<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for Exceptions<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form<'a> {
            Values {
                #[serde(borrow, default)]
                values: Option<Vec<ExceptionJson<'a>>>,
            },
            List(#[serde(borrow)] Vec<ExceptionJson<'a>>),
        }
        Ok(match Form::deserialize(deserializer)? {
            Form::Values { values } => Exceptions(values.unwrap_or_default()),
            Form::List(values) => Exceptions(values),
        })
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ExceptionJson<'a> {
    #[serde(rename = "type", borrow, default)]
    pub exception_type: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub value: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub stacktrace: Option<Stacktrace<'a>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Stacktrace<'a> {
    #[serde(borrow, default)]
    pub frames: Option<Vec<Frame<'a>>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Frame<'a> {
    #[serde(borrow, default)]
    pub filename: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub abs_path: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub module: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub function: Option<Text<'a>>,
    #[serde(default)]
    pub lineno: Option<Value>,
    #[serde(default)]
    pub in_app: Option<bool>,
}

/// `message` (a string, or `{"formatted", "message"}`) or `logentry`.
#[derive(Debug)]
pub(crate) struct Message<'a>(pub Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Message<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form<'a> {
            Text(#[serde(borrow)] Cow<'a, str>),
            Entry {
                #[serde(borrow, default)]
                formatted: Option<Cow<'a, str>>,
                #[serde(borrow, default)]
                message: Option<Cow<'a, str>>,
            },
        }
        Ok(match Form::deserialize(deserializer)? {
            Form::Text(text) => Message(Some(text)),
            Form::Entry { formatted, message } => Message(formatted.or(message)),
        })
    }
}

/// A `span` item in the span v2 format (`{"items": [...]}`).
#[derive(Debug, Deserialize)]
pub(crate) struct SpanV2Container<'a> {
    #[serde(borrow)]
    pub items: Vec<SpanV2<'a>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SpanV2<'a> {
    #[serde(borrow, default)]
    pub trace_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub span_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub parent_span_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub name: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub status: Option<Text<'a>>,
    #[serde(default)]
    pub start_timestamp: Option<Time>,
    #[serde(default)]
    pub end_timestamp: Option<Time>,
    #[serde(borrow, default)]
    pub attributes: Option<Pairs<'a, AttributeV2<'a>>>,
    #[serde(borrow, default)]
    pub links: Option<Vec<LinkV2<'a>>>,
}

/// A typed attribute of the span v2 format: `{"type": "integer", "value": 200}`.
#[derive(Debug, Deserialize)]
pub(crate) struct AttributeV2<'a> {
    #[serde(rename = "type", borrow, default)]
    pub value_type: Option<Text<'a>>,
    #[serde(default)]
    pub value: Value,
}

#[derive(Debug, Deserialize)]
pub(crate) struct LinkV2<'a> {
    #[serde(borrow, default)]
    pub trace_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub span_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub attributes: Option<Pairs<'a, AttributeV2<'a>>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_float_seconds_or_rfc3339() {
        let t = |json: &str| serde_json::from_str::<Time>(json).unwrap();
        assert_eq!(t("1714564800"), Time::Nanos(1_714_564_800_000_000_000));
        assert_eq!(t("1714564800.5"), Time::Nanos(1_714_564_800_500_000_000));
        assert_eq!(
            t("1742921669.158209"),
            Time::Nanos(1_742_921_669_158_209_000)
        );
        assert_eq!(
            t(r#""2024-05-01T12:00:00.123456Z""#),
            Time::Nanos(1_714_564_800_123_456_000)
        );
        assert_eq!(
            t(r#""2024-05-01T14:00:00.123456789+02:00""#),
            Time::Nanos(1_714_564_800_123_456_789)
        );
        assert_eq!(
            t(r#""2024-05-01T12:00:00.25""#),
            Time::Nanos(1_714_564_800_250_000_000)
        );
        assert_eq!(
            t(r#""1714564800.5""#),
            Time::Nanos(1_714_564_800_500_000_000)
        );
        assert_eq!(t("-1"), Time::Invalid("is before 1970"));
        assert_eq!(t("1e300"), Time::Invalid("is after the year 2262"));
        assert_eq!(
            t(r#""yesterday""#),
            Time::Invalid("is not an RFC 3339 timestamp")
        );
        assert_eq!(t("null"), Time::Invalid("is null"));
        assert!(matches!(t("{\"a\": [1]}"), Time::Invalid(_)));
        assert!(matches!(t("true"), Time::Invalid(_)));
    }

    #[test]
    fn pairs_read_objects_and_arrays_of_pairs_and_borrow() {
        let json = r#"{"a": "x", "b": 1}"#;
        let pairs: Pairs<'_, Value> = serde_json::from_str(json).unwrap();
        assert_eq!(pairs.0.len(), 2);
        assert!(matches!(pairs.0[0].0, Cow::Borrowed("a")));
        let pairs: Pairs<'_, Value> = serde_json::from_str(r#"[["a", "x"], ["b", "y"]]"#).unwrap();
        assert_eq!(pairs.0[1].0, "b");
        let pairs: Pairs<'_, Value> = serde_json::from_str("null").unwrap();
        assert!(pairs.0.is_empty());
        assert!(serde_json::from_str::<Pairs<'_, Value>>("5").is_err());
    }

    #[test]
    fn exceptions_and_messages_take_both_forms() {
        let e: Exceptions<'_> =
            serde_json::from_str(r#"{"values": [{"type": "E", "value": "v"}]}"#).unwrap();
        assert_eq!(text(&e.0[0].exception_type), Some("E"));
        let e: Exceptions<'_> = serde_json::from_str(r#"[{"type": "E"}]"#).unwrap();
        assert_eq!(e.0.len(), 1);
        let m: Message<'_> = serde_json::from_str(r#""hello""#).unwrap();
        assert_eq!(m.0.as_deref(), Some("hello"));
        let m: Message<'_> =
            serde_json::from_str(r#"{"message": "hi %s", "formatted": "hi you"}"#).unwrap();
        assert_eq!(m.0.as_deref(), Some("hi you"));
    }
}
