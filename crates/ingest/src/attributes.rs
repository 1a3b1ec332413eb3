//! OTLP `AnyValue`s rendered as text plus a type (see the crate docs).
//!
//! Rendering happens in two steps so that no value needs its own allocation:
//! [`render_attributes`] appends every non-string value of a span to one scratch
//! `String` and records where it went ([`PendingAttr`]); once the span is
//! complete, [`resolve`] turns the pending list into [`Attr`]s that borrow either
//! the request (strings) or the scratch text (everything else).

use std::borrow::Cow;
use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
pub(crate) use lighttrace_model::{Attr, AttrType, PendingAttr, PendingValue};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};

/// Arrays and kvlists may nest this deep; one level more makes the request malformed.
pub(crate) const MAX_NESTING: usize = 16;

/// An attribute value nested deeper than [`MAX_NESTING`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NestedTooDeep;

impl std::fmt::Display for NestedTooDeep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "attribute value nested deeper than {MAX_NESTING} levels")
    }
}

/// Renders `attributes` into `text` (non-strings) and `out` (one entry each).
pub(crate) fn render_attributes<'r>(
    attributes: &'r [KeyValue],
    text: &mut String,
    out: &mut Vec<PendingAttr<'r>>,
) -> Result<(), NestedTooDeep> {
    out.reserve(attributes.len());
    for kv in attributes {
        let (value, ty) = render_value(kv.value.as_ref(), text)?;
        out.push(PendingAttr {
            key: &kv.key,
            value,
            ty,
        });
    }
    Ok(())
}

/// The text of one attribute value (or log body) and its type.
pub(crate) fn render_value<'r>(
    value: Option<&'r AnyValue>,
    text: &mut String,
) -> Result<(PendingValue<'r>, AttrType), NestedTooDeep> {
    let Some(value) = value.and_then(|v| v.value.as_ref()) else {
        return Ok((PendingValue::Borrowed(""), AttrType::String));
    };
    let start = text.len();
    let ty = match value {
        Value::StringValue(s) => return Ok((PendingValue::Borrowed(s), AttrType::String)),
        Value::BoolValue(b) => {
            let s = if *b { "true" } else { "false" };
            return Ok((PendingValue::Borrowed(s), AttrType::Bool));
        }
        // A string-table index is only meaningful in OTLP profiles, which carry
        // the table; a trace has none, so there is no value to show.
        Value::StringValueStrindex(_) => {
            return Ok((PendingValue::Borrowed(""), AttrType::String));
        }
        Value::IntValue(i) => {
            push_int(text, *i);
            AttrType::Int
        }
        Value::DoubleValue(d) => {
            push_display_double(text, *d);
            AttrType::Double
        }
        Value::BytesValue(bytes) => {
            push_base64(text, bytes);
            AttrType::Bytes
        }
        Value::ArrayValue(array) => {
            write_json_values(&array.values, 1, text)?;
            AttrType::Array
        }
        Value::KvlistValue(list) => {
            write_json_key_values(&list.values, 1, text)?;
            AttrType::KvList
        }
    };
    Ok((PendingValue::Text(start..text.len()), ty))
}

/// `i` in decimal, as `Display` writes it, without the formatting machinery
/// (this runs for every int attribute of every span).
pub(crate) fn push_int(text: &mut String, i: i64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = i.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if i < 0 {
        text.push('-');
    }
    for &digit in &digits[at..] {
        text.push(char::from(digit));
    }
}

/// `d` as `Display` writes it: the shortest text that parses back to `d`.
pub(crate) fn push_display_double(text: &mut String, d: f64) {
    // Writing to a String cannot fail.
    let _ = write!(text, "{d}");
}

pub(crate) fn push_base64(text: &mut String, bytes: &[u8]) {
    BASE64.encode_string(bytes, text);
}

/// `{"intValue":"-42"}`
pub(crate) fn write_json_int(i: i64, out: &mut String) {
    out.push_str(r#"{"intValue":""#);
    push_int(out, i);
    out.push_str(r#""}"#);
}

/// `{"doubleValue":0.5}`, with the non-finite values as OTLP/JSON strings.
pub(crate) fn write_json_double(d: f64, out: &mut String) {
    out.push_str(r#"{"doubleValue":"#);
    if d.is_nan() {
        out.push_str(r#""NaN""#);
    } else if d.is_infinite() {
        out.push_str(if d > 0.0 {
            r#""Infinity""#
        } else {
            r#""-Infinity""#
        });
    } else {
        // Debug prints the shortest round-trip digits and switches to
        // exponent notation for very large or small magnitudes (`1e300`),
        // which is a valid JSON number, where Display would print 301 digits.
        let _ = write!(out, "{d:?}");
    }
    out.push('}');
}

/// `{"bytesValue":"aGk="}`
pub(crate) fn write_json_bytes(bytes: &[u8], out: &mut String) {
    out.push_str(r#"{"bytesValue":""#);
    push_base64(out, bytes);
    out.push_str(r#""}"#);
}

/// `[v, v, …]`: the values of an array at nesting `depth` (1 = outermost).
fn write_json_values(
    values: &[AnyValue],
    depth: usize,
    out: &mut String,
) -> Result<(), NestedTooDeep> {
    if depth > MAX_NESTING {
        return Err(NestedTooDeep);
    }
    out.push('[');
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_any_value(value.value.as_ref(), depth, out)?;
    }
    out.push(']');
    Ok(())
}

/// `[{"key":k,"value":v}, …]`: the entries of a kvlist at nesting `depth`.
fn write_json_key_values(
    values: &[KeyValue],
    depth: usize,
    out: &mut String,
) -> Result<(), NestedTooDeep> {
    if depth > MAX_NESTING {
        return Err(NestedTooDeep);
    }
    out.push('[');
    for (i, kv) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(r#"{"key":"#);
        write_json_string(&kv.key, out);
        out.push_str(r#","value":"#);
        write_json_any_value(kv.value.as_ref().and_then(|v| v.value.as_ref()), depth, out)?;
        out.push('}');
    }
    out.push(']');
    Ok(())
}

/// One `AnyValue` in OTLP/JSON, inside a container at nesting `depth`.
fn write_json_any_value(
    value: Option<&Value>,
    depth: usize,
    out: &mut String,
) -> Result<(), NestedTooDeep> {
    match value {
        None | Some(Value::StringValueStrindex(_)) => out.push_str("{}"),
        Some(Value::StringValue(s)) => {
            out.push_str(r#"{"stringValue":"#);
            write_json_string(s, out);
            out.push('}');
        }
        Some(Value::BoolValue(b)) => out.push_str(if *b {
            r#"{"boolValue":true}"#
        } else {
            r#"{"boolValue":false}"#
        }),
        Some(Value::IntValue(i)) => write_json_int(*i, out),
        Some(Value::DoubleValue(d)) => write_json_double(*d, out),
        Some(Value::BytesValue(bytes)) => write_json_bytes(bytes, out),
        Some(Value::ArrayValue(array)) => {
            out.push_str(r#"{"arrayValue":{"values":"#);
            write_json_values(&array.values, depth + 1, out)?;
            out.push_str("}}");
        }
        Some(Value::KvlistValue(list)) => {
            out.push_str(r#"{"kvlistValue":{"values":"#);
            write_json_key_values(&list.values, depth + 1, out)?;
            out.push_str("}}");
        }
    }
    Ok(())
}

/// A JSON string literal, quotes included.
pub(crate) fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut plain_from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        // `i` is at an ASCII byte, so both slices end on char boundaries.
        out.push_str(&s[plain_from..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        plain_from = i + 1;
    }
    out.push_str(&s[plain_from..]);
    out.push('"');
}

/// Appends the `Attr`s of `pending` to `out`; `text` is the scratch they point into.
pub(crate) fn resolve<'t>(pending: &[PendingAttr<'t>], text: &'t str, out: &mut Vec<Attr<'t>>) {
    out.reserve(pending.len());
    for p in pending {
        let value = match &p.value {
            PendingValue::Borrowed(s) => *s,
            // Ranges come from this same `text`, cut at the end of whole values.
            PendingValue::Text(range) => text.get(range.clone()).unwrap_or_default(),
        };
        out.push(Attr {
            key: Cow::Borrowed(p.key),
            value: Cow::Borrowed(value),
            ty: p.ty,
        });
    }
}

/// Empties `attrs` and returns its allocation with a new lifetime, so scratch
/// vectors can outlive the text their previous contents borrowed.
pub(crate) fn recycle_attrs<'b>(mut attrs: Vec<Attr<'_>>) -> Vec<Attr<'b>> {
    attrs.clear();
    // Collecting an (empty) `vec::IntoIter` into a Vec of a same-layout type
    // reuses the allocation in place.
    attrs
        .into_iter()
        .map(|_| unreachable!("cleared above"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};

    fn any(value: Value) -> AnyValue {
        AnyValue { value: Some(value) }
    }

    fn kv(key: &str, value: Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(any(value)),
            key_strindex: 0,
        }
    }

    fn render_one(value: Value) -> Result<(String, AttrType), NestedTooDeep> {
        let attrs = [kv("k", value)];
        let mut text = String::new();
        let mut pending = Vec::new();
        render_attributes(&attrs, &mut text, &mut pending)?;
        let mut out = Vec::new();
        resolve(&pending, &text, &mut out);
        Ok((out[0].value.to_string(), out[0].ty))
    }

    fn nested_arrays(levels: usize) -> Value {
        let mut value = Value::IntValue(7);
        for _ in 0..levels {
            value = Value::ArrayValue(ArrayValue {
                values: vec![any(value)],
            });
        }
        value
    }

    #[test]
    fn scalars_render_as_documented() {
        let cases = [
            (Value::StringValue("a\"b".into()), "a\"b", AttrType::String),
            (Value::IntValue(-42), "-42", AttrType::Int),
            (
                Value::IntValue(i64::MIN),
                "-9223372036854775808",
                AttrType::Int,
            ),
            (Value::DoubleValue(0.1), "0.1", AttrType::Double),
            (Value::DoubleValue(1.0), "1", AttrType::Double),
            (Value::DoubleValue(f64::NAN), "NaN", AttrType::Double),
            (Value::DoubleValue(f64::INFINITY), "inf", AttrType::Double),
            (
                Value::DoubleValue(f64::NEG_INFINITY),
                "-inf",
                AttrType::Double,
            ),
            (Value::BoolValue(true), "true", AttrType::Bool),
            (Value::BoolValue(false), "false", AttrType::Bool),
            (Value::BytesValue(vec![0xff, 0, 1]), "/wAB", AttrType::Bytes),
            (Value::BytesValue(vec![]), "", AttrType::Bytes),
            (Value::StringValueStrindex(3), "", AttrType::String),
        ];
        for (value, text, ty) in cases {
            assert_eq!(render_one(value).unwrap(), (text.to_string(), ty));
        }
    }

    #[test]
    fn doubles_round_trip_through_their_text() {
        for d in [
            0.1,
            1e300,
            5e-324,
            -0.0,
            123456.789,
            f64::MAX,
            f64::MIN_POSITIVE,
        ] {
            let (text, _) = render_one(Value::DoubleValue(d)).unwrap();
            assert_eq!(text.parse::<f64>().unwrap().to_bits(), d.to_bits());
            let (json, _) = render_one(Value::ArrayValue(ArrayValue {
                values: vec![any(Value::DoubleValue(d))],
            }))
            .unwrap();
            let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
            let back = parsed[0]["doubleValue"].as_f64().unwrap();
            assert_eq!(back.to_bits(), d.to_bits(), "{json}");
        }
    }

    #[test]
    fn missing_values_are_empty_strings() {
        let attrs = [
            KeyValue {
                key: "none".into(),
                value: None,
                key_strindex: 0,
            },
            KeyValue {
                key: "unset".into(),
                value: Some(AnyValue { value: None }),
                key_strindex: 0,
            },
        ];
        let mut text = String::new();
        let mut pending = Vec::new();
        render_attributes(&attrs, &mut text, &mut pending).unwrap();
        let mut out = Vec::new();
        resolve(&pending, &text, &mut out);
        assert_eq!(
            out,
            vec![Attr::string("none", ""), Attr::string("unset", "")]
        );
    }

    #[test]
    fn arrays_and_kvlists_render_as_otlp_json() {
        let array = Value::ArrayValue(ArrayValue {
            values: vec![
                any(Value::StringValue("a".into())),
                any(Value::IntValue(1)),
                any(Value::DoubleValue(1.5)),
                any(Value::DoubleValue(2.0)),
                any(Value::DoubleValue(f64::NAN)),
                any(Value::DoubleValue(f64::INFINITY)),
                any(Value::DoubleValue(f64::NEG_INFINITY)),
                any(Value::BoolValue(false)),
                any(Value::BytesValue(b"hi".to_vec())),
                AnyValue { value: None },
                any(Value::ArrayValue(ArrayValue { values: vec![] })),
            ],
        });
        assert_eq!(
            render_one(array).unwrap(),
            (
                concat!(
                    r#"[{"stringValue":"a"},{"intValue":"1"},{"doubleValue":1.5},"#,
                    r#"{"doubleValue":2.0},{"doubleValue":"NaN"},{"doubleValue":"Infinity"},"#,
                    r#"{"doubleValue":"-Infinity"},{"boolValue":false},{"bytesValue":"aGk="},"#,
                    r#"{},{"arrayValue":{"values":[]}}]"#
                )
                .to_string(),
                AttrType::Array
            )
        );
        let kvlist = Value::KvlistValue(KeyValueList {
            values: vec![
                kv("k", Value::BoolValue(true)),
                kv(
                    "nested",
                    Value::KvlistValue(KeyValueList {
                        values: vec![kv("x", Value::StringValue("y".into()))],
                    }),
                ),
                KeyValue {
                    key: "empty".into(),
                    value: None,
                    key_strindex: 0,
                },
            ],
        });
        assert_eq!(
            render_one(kvlist).unwrap(),
            (
                concat!(
                    r#"[{"key":"k","value":{"boolValue":true}},"#,
                    r#"{"key":"nested","value":{"kvlistValue":{"values":[{"key":"x","value":{"stringValue":"y"}}]}}},"#,
                    r#"{"key":"empty","value":{}}]"#
                )
                .to_string(),
                AttrType::KvList
            )
        );
    }

    #[test]
    fn rendered_json_parses_back_into_otlp_values() {
        let array = ArrayValue {
            values: vec![
                any(Value::StringValue(
                    "quote \" backslash \\ nl \n tab \t bell \u{7} é 🎉".into(),
                )),
                any(Value::IntValue(i64::MAX)),
                any(Value::DoubleValue(-2.5e-10)),
                any(Value::BytesValue(vec![1, 2, 3, 250])),
                any(Value::KvlistValue(KeyValueList {
                    values: vec![kv("k\u{0}", Value::BoolValue(true))],
                })),
            ],
        };
        let (json, ty) = render_one(Value::ArrayValue(array.clone())).unwrap();
        assert_eq!(ty, AttrType::Array);
        let wrapped = format!(r#"{{"values":{json}}}"#);
        let back: ArrayValue = serde_json::from_str(&wrapped).unwrap();
        assert_eq!(back, array);
    }

    #[test]
    fn sixteen_levels_render_and_seventeen_are_refused() {
        let (json, ty) = render_one(nested_arrays(MAX_NESTING)).unwrap();
        assert_eq!(ty, AttrType::Array);
        assert_eq!(json.matches("arrayValue").count(), MAX_NESTING - 1);
        assert_eq!(
            render_one(nested_arrays(MAX_NESTING + 1)),
            Err(NestedTooDeep)
        );

        // Mixed kvlist / array nesting counts the same way.
        let mut value = Value::StringValue("leaf".into());
        for level in 0..=MAX_NESTING {
            value = if level % 2 == 0 {
                Value::KvlistValue(KeyValueList {
                    values: vec![kv("k", value)],
                })
            } else {
                Value::ArrayValue(ArrayValue {
                    values: vec![any(value)],
                })
            };
        }
        assert_eq!(render_one(value), Err(NestedTooDeep));
    }

    #[test]
    fn strings_borrow_and_other_values_share_one_text() {
        let attrs = [
            kv("s", Value::StringValue("borrowed".into())),
            kv("i", Value::IntValue(12)),
            kv("d", Value::DoubleValue(0.5)),
        ];
        let mut text = String::new();
        let mut pending = Vec::new();
        render_attributes(&attrs, &mut text, &mut pending).unwrap();
        assert_eq!(text, "120.5");
        assert_eq!(pending[0].value, PendingValue::Borrowed("borrowed"));
        assert_eq!(pending[1].value, PendingValue::Text(0..2));
        assert_eq!(pending[2].value, PendingValue::Text(2..5));
        assert_eq!(pending.iter().map(PendingAttr::text_len).sum::<usize>(), 16);
    }

    #[test]
    fn recycling_keeps_the_allocation() {
        let text = String::from("value");
        let mut attrs: Vec<Attr<'_>> = Vec::with_capacity(32);
        attrs.push(Attr::string("k", text.as_str()));
        let ptr = attrs.as_ptr() as usize;
        let recycled: Vec<Attr<'static>> = recycle_attrs(attrs);
        drop(text);
        assert!(recycled.is_empty());
        assert_eq!(recycled.capacity(), 32);
        assert_eq!(recycled.as_ptr() as usize, ptr);
    }
}
