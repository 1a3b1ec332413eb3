//! `KeyValue`s and `AnyValue`s rendered straight from the wire, with the
//! renderings of [`crate::attributes`].
//!
//! An `AnyValue` is a oneof, and prost merges it the protobuf way: a later
//! field of another case replaces the value, a later field of the same case
//! replaces a scalar and extends an array or kvlist. A `KeyValue` whose
//! `value` appears twice merges both into one `AnyValue`. So the value is the
//! last case seen, and for an array or kvlist the concatenation of the last
//! run of fields of that case. [`resolve`] finds that in one pass over the
//! fields; arrays and kvlists need a second pass that renders the final run
//! and checks the fields it overrides.

use crate::attributes::{
    MAX_NESTING, PendingAttr, PendingValue, push_base64, push_display_double, push_int,
    write_json_bytes, write_json_double, write_json_int, write_json_string,
};
use lighttrace_model::AttrType;

use super::schema::{self, Message};
use super::wire::{Reader, Value, WireError, WireResult, decode_varint, utf8};

/// Why a value could not be rendered.
#[derive(Debug)]
pub(crate) enum RenderError {
    Wire(WireError),
    /// Nested deeper than [`MAX_NESTING`]; a rejection of the request, not a
    /// wire error (see `super::decode`).
    TooDeep,
}

impl From<WireError> for RenderError {
    fn from(e: WireError) -> Self {
        RenderError::Wire(e)
    }
}

/// Where the fields of one `AnyValue` are.
#[derive(Debug, Clone, Copy)]
enum Source<'r> {
    /// An `AnyValue` body (an element of an `ArrayValue`, or the only `value`
    /// of a `KeyValue`).
    One(&'r [u8]),
    /// A message with several `AnyValue` fields of number `tag` (a
    /// `KeyValue`'s `value`, a `LogRecord`'s `body`), to be read as one.
    Merged {
        parent: &'r [u8],
        message: Message,
        tag: u32,
    },
}

impl<'r> Source<'r> {
    /// Several `value` fields of a `KeyValue` body.
    fn key_value(body: &'r [u8]) -> Self {
        Source::Merged {
            parent: body,
            message: Message::KeyValue,
            tag: 2,
        }
    }
}

/// The fields of an `AnyValue`, across all its fields in the parent when merged.
struct Fields<'r> {
    current: Reader<'r>,
    /// The rest of the parent, its `AnyValue` field number and its recursion
    /// budget, when merged.
    rest: Option<(Reader<'r>, u32, u32)>,
}

impl<'r> Fields<'r> {
    /// `ctx` is the recursion budget of the `AnyValue`'s fields.
    fn new(source: Source<'r>, ctx: u32) -> Self {
        let name = Message::AnyValue.name();
        match source {
            Source::One(body) => Fields {
                current: Reader::new(body, name),
                rest: None,
            },
            Source::Merged {
                parent,
                message,
                tag,
            } => Fields {
                current: Reader::new(&[], name),
                rest: Some((Reader::new(parent, message.name()), tag, ctx + 1)),
            },
        }
    }

    #[inline]
    fn next(&mut self) -> WireResult<Option<(u32, Value<'r>)>> {
        loop {
            if let Some(field) = self.current.next_field()? {
                return Ok(Some(field));
            }
            let Some((parent, value_tag, parent_ctx)) = &mut self.rest else {
                return Ok(None);
            };
            // The parent was checked when it was first read: only groups need skipping.
            loop {
                match parent.next_field()? {
                    None => return Ok(None),
                    Some((tag, Value::Len(body))) if tag == *value_tag => {
                        self.current = Reader::new(body, Message::AnyValue.name());
                        break;
                    }
                    Some((tag, value @ (Value::StartGroup | Value::EndGroup))) => {
                        parent.skip_unknown(tag, value, *parent_ctx)?;
                    }
                    Some(_) => {}
                }
            }
        }
    }

    fn skip_unknown(&mut self, tag: u32, value: Value<'r>, ctx: u32) -> WireResult<()> {
        self.current.skip_unknown(tag, value, ctx)
    }
}

/// The case an `AnyValue` ends up with.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Case<'r> {
    Unset,
    String(&'r str),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(&'r [u8]),
    /// `string_value_strindex`: meaningless without the string table that only
    /// OTLP profiles carry.
    Strindex,
    Array,
    KvList,
}

#[derive(Debug, Clone, Copy)]
struct Resolved<'r> {
    case: Case<'r>,
    /// Index (among all fields) of the first field of the final array/kvlist run.
    run_start: usize,
    /// Whether any array or kvlist field was seen (then a second pass is due).
    has_containers: bool,
}

const ARRAY_VALUE: u32 = 5;
const KVLIST_VALUE: u32 = 6;

/// Reads every field of the value once, checking scalars on the way.
#[inline]
fn resolve<'r>(source: Source<'r>, ctx: u32) -> WireResult<Resolved<'r>> {
    let mut fields = Fields::new(source, ctx);
    let mut resolved = Resolved {
        case: Case::Unset,
        run_start: 0,
        has_containers: false,
    };
    let mut index = 0;
    while let Some((tag, value)) = fields.next()? {
        resolved.case = match tag {
            1 => Case::String(value.string("AnyValue.string_value")?),
            2 => Case::Bool(value.varint("AnyValue.bool_value")? != 0),
            3 => Case::Int(value.varint("AnyValue.int_value")? as i64),
            4 => Case::Double(f64::from_bits(value.fixed64("AnyValue.double_value")?)),
            ARRAY_VALUE | KVLIST_VALUE => {
                let (case, name) = if tag == ARRAY_VALUE {
                    (Case::Array, "AnyValue.array_value")
                } else {
                    (Case::KvList, "AnyValue.kvlist_value")
                };
                value.message(name, ctx)?;
                resolved.has_containers = true;
                if resolved.case != case {
                    resolved.run_start = index;
                }
                case
            }
            7 => Case::Bytes(value.bytes("AnyValue.bytes_value")?),
            8 => {
                value.varint("AnyValue.string_value_strindex")?;
                Case::Strindex
            }
            _ => {
                fields.skip_unknown(tag, value, ctx)?;
                resolved.case
            }
        };
        index += 1;
    }
    Ok(resolved)
}

/// Renders the final array or kvlist run of `source` as the JSON list of its
/// values (`depth` 1 = outermost), and checks the container fields it overrides.
fn render_containers(
    source: Source<'_>,
    ctx: u32,
    resolved: &Resolved<'_>,
    depth: usize,
    out: &mut String,
) -> Result<(), RenderError> {
    let rendering = matches!(resolved.case, Case::Array | Case::KvList);
    if rendering {
        if depth > MAX_NESTING {
            return Err(RenderError::TooDeep);
        }
        out.push('[');
    }
    let mut first = true;
    let mut fields = Fields::new(source, ctx);
    let mut index = 0;
    while let Some((tag, value)) = fields.next()? {
        match (tag, value) {
            (ARRAY_VALUE | KVLIST_VALUE, Value::Len(body)) => {
                if rendering && index >= resolved.run_start {
                    if tag == ARRAY_VALUE {
                        render_array_values(body, ctx - 1, depth, &mut first, out)?;
                    } else {
                        render_kvlist_values(body, ctx - 1, depth, &mut first, out)?;
                    }
                } else {
                    let message = if tag == ARRAY_VALUE {
                        Message::ArrayValue
                    } else {
                        Message::KeyValueList
                    };
                    schema::check(message, body, ctx - 1)?;
                }
            }
            (_, value @ (Value::StartGroup | Value::EndGroup)) => {
                fields.skip_unknown(tag, value, ctx)?;
            }
            _ => {}
        }
        index += 1;
    }
    if rendering {
        out.push(']');
    }
    Ok(())
}

/// The `values` of one `ArrayValue` body, comma-separated.
fn render_array_values(
    body: &[u8],
    ctx: u32,
    depth: usize,
    first: &mut bool,
    out: &mut String,
) -> Result<(), RenderError> {
    let mut reader = Reader::new(body, Message::ArrayValue.name());
    while let Some((tag, value)) = reader.next_field()? {
        if tag != 1 {
            reader.skip_unknown(tag, value, ctx)?;
            continue;
        }
        let element = value.message("ArrayValue.values", ctx)?;
        if !std::mem::take(first) {
            out.push(',');
        }
        write_json_any_value(Source::One(element), ctx - 1, depth, out)?;
    }
    Ok(())
}

/// The `values` of one `KeyValueList` body, comma-separated.
fn render_kvlist_values(
    body: &[u8],
    ctx: u32,
    depth: usize,
    first: &mut bool,
    out: &mut String,
) -> Result<(), RenderError> {
    let mut reader = Reader::new(body, Message::KeyValueList.name());
    while let Some((tag, value)) = reader.next_field()? {
        if tag != 1 {
            reader.skip_unknown(tag, value, ctx)?;
            continue;
        }
        let entry = value.message("KeyValueList.values", ctx)?;
        let (key, source) = read_key_value(entry, ctx - 1)?;
        if !std::mem::take(first) {
            out.push(',');
        }
        out.push_str(r#"{"key":"#);
        write_json_string(key, out);
        out.push_str(r#","value":"#);
        match source {
            Some(source) => write_json_any_value(source, ctx - 2, depth, out)?,
            None => out.push_str("{}"),
        }
        out.push('}');
    }
    Ok(())
}

/// One `AnyValue` in OTLP/JSON, inside a container at nesting `depth`.
fn write_json_any_value(
    source: Source<'_>,
    ctx: u32,
    depth: usize,
    out: &mut String,
) -> Result<(), RenderError> {
    let resolved = resolve(source, ctx)?;
    match resolved.case {
        Case::Unset | Case::Strindex => out.push_str("{}"),
        Case::String(s) => {
            out.push_str(r#"{"stringValue":"#);
            write_json_string(s, out);
            out.push('}');
        }
        Case::Bool(b) => out.push_str(if b {
            r#"{"boolValue":true}"#
        } else {
            r#"{"boolValue":false}"#
        }),
        Case::Int(i) => write_json_int(i, out),
        Case::Double(d) => write_json_double(d, out),
        Case::Bytes(bytes) => write_json_bytes(bytes, out),
        Case::Array => out.push_str(r#"{"arrayValue":{"values":"#),
        Case::KvList => out.push_str(r#"{"kvlistValue":{"values":"#),
    }
    if resolved.has_containers {
        render_containers(source, ctx, &resolved, depth + 1, out)?;
    }
    if matches!(resolved.case, Case::Array | Case::KvList) {
        out.push_str("}}");
    }
    Ok(())
}

/// The key of a `KeyValue` body read with budget `ctx`, and where its value's
/// fields are (`None`: no `value` field at all).
#[inline]
fn read_key_value(body: &[u8], ctx: u32) -> WireResult<(&str, Option<Source<'_>>)> {
    let mut reader = Reader::new(body, Message::KeyValue.name());
    let mut key = "";
    let mut source = None;
    while let Some((tag, value)) = reader.next_field()? {
        match tag {
            1 => key = value.string("KeyValue.key")?,
            2 => {
                let any = value.message("KeyValue.value", ctx)?;
                source = Some(match source {
                    None => Source::One(any),
                    Some(_) => Source::key_value(body),
                });
            }
            3 => {
                value.varint("KeyValue.key_strindex")?;
            }
            _ => reader.skip_unknown(tag, value, ctx)?,
        }
    }
    Ok((key, source))
}

/// Renders the `KeyValue` `body` (fields read with budget `ctx`) as one
/// pending attribute, its non-string text appended to `text`.
#[inline]
pub(crate) fn render_key_value<'r>(
    body: &'r [u8],
    ctx: u32,
    text: &mut String,
    out: &mut Vec<PendingAttr<'r>>,
) -> Result<(), RenderError> {
    if let Some(attr) = render_common_layout(body, ctx, text) {
        out.push(attr);
        return Ok(());
    }
    let (key, source) = read_key_value(body, ctx)?;
    let (value, ty) = match source {
        None => (PendingValue::Borrowed(""), AttrType::String),
        Some(source) => render_value(source, ctx - 1, text)?,
    };
    out.push(PendingAttr { key, value, ty });
    Ok(())
}

/// A scalar attribute in the layout that OTLP encoders write:
/// `KeyValue{1: key, 2: AnyValue{one scalar field}}`, every length one byte,
/// nothing else. Reading it by its bytes skips the general field loops, which
/// were most of the time spent on attributes. Any other layout, and anything
/// invalid, is left to the general path (`None`, with `text` untouched), so
/// results and errors are always the general path's.
#[inline(always)]
fn render_common_layout<'r>(
    body: &'r [u8],
    ctx: u32,
    text: &mut String,
) -> Option<PendingAttr<'r>> {
    // The general path needs one level of budget for `KeyValue.value`.
    if ctx == 0 {
        return None;
    }
    let [0x0a, key_len, rest @ ..] = body else {
        return None;
    };
    if *key_len >= 0x80 {
        return None;
    }
    let (key, rest) = rest.split_at_checked(usize::from(*key_len))?;
    let [0x12, any_len, any @ ..] = rest else {
        return None;
    };
    if *any_len >= 0x80 || usize::from(*any_len) != any.len() {
        return None;
    }
    let key = utf8(key)?;
    let (value, ty) = match any {
        [0x0a, len, s @ ..] if *len < 0x80 && usize::from(*len) == s.len() => {
            (PendingValue::Borrowed(utf8(s)?), AttrType::String)
        }
        [0x10, b] if *b < 0x80 => (
            PendingValue::Borrowed(if *b != 0 { "true" } else { "false" }),
            AttrType::Bool,
        ),
        [0x18, varint @ ..] => {
            let (i, len) = decode_varint(varint)?;
            if len != varint.len() {
                return None;
            }
            let start = text.len();
            push_int(text, i as i64);
            (PendingValue::Text(start..text.len()), AttrType::Int)
        }
        [0x21, bits @ ..] => {
            let bits: [u8; 8] = bits.try_into().ok()?;
            let start = text.len();
            push_display_double(text, f64::from_bits(u64::from_le_bytes(bits)));
            (PendingValue::Text(start..text.len()), AttrType::Double)
        }
        _ => return None,
    };
    Some(PendingAttr { key, value, ty })
}

/// The text of one attribute value and its type; see [`crate::attributes`].
#[inline]
fn render_value<'r>(
    source: Source<'r>,
    ctx: u32,
    text: &mut String,
) -> Result<(PendingValue<'r>, AttrType), RenderError> {
    let resolved = resolve(source, ctx)?;
    render_resolved(source, ctx, &resolved, text)
}

fn render_resolved<'r>(
    source: Source<'r>,
    ctx: u32,
    resolved: &Resolved<'r>,
    text: &mut String,
) -> Result<(PendingValue<'r>, AttrType), RenderError> {
    let start = text.len();
    let ty = match resolved.case {
        Case::Unset | Case::Strindex => AttrType::String,
        Case::String(_) => AttrType::String,
        Case::Bool(_) => AttrType::Bool,
        Case::Int(i) => {
            push_int(text, i);
            AttrType::Int
        }
        Case::Double(d) => {
            push_display_double(text, d);
            AttrType::Double
        }
        Case::Bytes(bytes) => {
            push_base64(text, bytes);
            AttrType::Bytes
        }
        Case::Array => AttrType::Array,
        Case::KvList => AttrType::KvList,
    };
    if resolved.has_containers {
        render_containers(source, ctx, resolved, 1, text)?;
    }
    let value = match resolved.case {
        Case::Unset | Case::Strindex => PendingValue::Borrowed(""),
        Case::String(s) => PendingValue::Borrowed(s),
        Case::Bool(b) => PendingValue::Borrowed(if b { "true" } else { "false" }),
        _ => PendingValue::Text(start..text.len()),
    };
    Ok((value, ty))
}

/// Renders the body of a log record like an attribute value: `bodies` are its
/// `body` fields (prost merges several into one), read with budget `ctx`,
/// within the `LogRecord` body `record`. `None` when no value is set.
pub(crate) fn render_body<'r>(
    record: &'r [u8],
    bodies: &[&'r [u8]],
    ctx: u32,
    text: &mut String,
) -> Result<Option<(PendingValue<'r>, AttrType)>, RenderError> {
    let source = match bodies {
        [] => return Ok(None),
        [body] => Source::One(body),
        _ => Source::Merged {
            parent: record,
            message: Message::LogRecord,
            tag: 5,
        },
    };
    let resolved = resolve(source, ctx)?;
    if resolved.case == Case::Unset {
        return Ok(None);
    }
    render_resolved(source, ctx, &resolved, text).map(Some)
}
