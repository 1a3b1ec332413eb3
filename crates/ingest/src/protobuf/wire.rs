//! The protobuf wire format, read in place from a byte slice.
//!
//! Every rule here copies what prost 0.14 accepts, so that the borrowing
//! decoder refuses exactly the bodies `ExportTraceServiceRequest::decode`
//! refuses: varints of at most 10 bytes that fit a `u64`, keys that fit a
//! `u32` with a non-zero tag and a wire type of 0 to 5, unknown fields of every
//! wire type skipped (groups included, as prost does), and the same recursion
//! limit of 100 nested messages.

use std::fmt;

/// prost's `RECURSION_LIMIT`: the message depth that a body may reach.
pub(crate) const RECURSION_LIMIT: u32 = 100;

/// What is wrong with a body; the field that was being read, when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WireError {
    field: &'static str,
    problem: Problem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Problem {
    InvalidVarint,
    InvalidKey(u64),
    InvalidWireType(u64),
    InvalidTag,
    UnexpectedWireType { actual: u8, expected: u8 },
    BufferUnderflow,
    UnexpectedEndGroup,
    InvalidString,
    RecursionLimit,
}

impl WireError {
    fn new(field: &'static str, problem: Problem) -> Self {
        WireError { field, problem }
    }

    /// A value of the wrong wire type for a known field.
    #[cold]
    #[inline(never)]
    pub(crate) fn wire_type(field: &'static str, actual: &Value<'_>, expected: u8) -> Self {
        WireError::new(
            field,
            Problem::UnexpectedWireType {
                actual: actual.wire_type(),
                expected,
            },
        )
    }
}

fn wire_type_name(wire_type: u8) -> &'static str {
    match wire_type {
        VARINT => "Varint",
        FIXED64 => "SixtyFourBit",
        LEN => "LengthDelimited",
        START_GROUP => "StartGroup",
        END_GROUP => "EndGroup",
        _ => "ThirtyTwoBit",
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.field)?;
        match self.problem {
            Problem::InvalidVarint => f.write_str("invalid varint"),
            Problem::InvalidKey(key) => write!(f, "invalid key value: {key}"),
            Problem::InvalidWireType(value) => write!(f, "invalid wire type value: {value}"),
            Problem::InvalidTag => f.write_str("invalid tag value: 0"),
            Problem::UnexpectedWireType { actual, expected } => write!(
                f,
                "invalid wire type: {} (expected {})",
                wire_type_name(actual),
                wire_type_name(expected)
            ),
            Problem::BufferUnderflow => f.write_str("buffer underflow"),
            Problem::UnexpectedEndGroup => f.write_str("unexpected end group tag"),
            Problem::InvalidString => {
                f.write_str("invalid string value: data is not UTF-8 encoded")
            }
            Problem::RecursionLimit => f.write_str("recursion limit reached"),
        }
    }
}

#[cold]
#[inline(never)]
fn invalid_string(field: &'static str) -> WireError {
    WireError::new(field, Problem::InvalidString)
}

#[cold]
#[inline(never)]
fn recursion_limit(field: &'static str) -> WireError {
    WireError::new(field, Problem::RecursionLimit)
}

pub(crate) type WireResult<T> = Result<T, WireError>;

pub(crate) const VARINT: u8 = 0;
pub(crate) const FIXED64: u8 = 1;
pub(crate) const LEN: u8 = 2;
pub(crate) const START_GROUP: u8 = 3;
pub(crate) const END_GROUP: u8 = 4;
pub(crate) const FIXED32: u8 = 5;

/// The value of one field, as its wire type carries it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value<'r> {
    Varint(u64),
    Fixed64(u64),
    Len(&'r [u8]),
    /// The reader stands after the start-group key; see [`Reader::skip_unknown`].
    StartGroup,
    EndGroup,
    Fixed32(u32),
}

impl<'r> Value<'r> {
    fn wire_type(&self) -> u8 {
        match self {
            Value::Varint(_) => VARINT,
            Value::Fixed64(_) => FIXED64,
            Value::Len(_) => LEN,
            Value::StartGroup => START_GROUP,
            Value::EndGroup => END_GROUP,
            Value::Fixed32(_) => FIXED32,
        }
    }

    #[inline]
    pub(crate) fn varint(self, field: &'static str) -> WireResult<u64> {
        match self {
            Value::Varint(v) => Ok(v),
            other => Err(WireError::wire_type(field, &other, VARINT)),
        }
    }

    #[inline]
    pub(crate) fn fixed64(self, field: &'static str) -> WireResult<u64> {
        match self {
            Value::Fixed64(v) => Ok(v),
            other => Err(WireError::wire_type(field, &other, FIXED64)),
        }
    }

    #[inline]
    pub(crate) fn fixed32(self, field: &'static str) -> WireResult<u32> {
        match self {
            Value::Fixed32(v) => Ok(v),
            other => Err(WireError::wire_type(field, &other, FIXED32)),
        }
    }

    #[inline]
    pub(crate) fn bytes(self, field: &'static str) -> WireResult<&'r [u8]> {
        match self {
            Value::Len(bytes) => Ok(bytes),
            other => Err(WireError::wire_type(field, &other, LEN)),
        }
    }

    /// A `string` field: prost refuses the whole message when one is not UTF-8.
    #[inline]
    pub(crate) fn string(self, field: &'static str) -> WireResult<&'r str> {
        let bytes = self.bytes(field)?;
        utf8(bytes).ok_or_else(|| invalid_string(field))
    }

    /// An embedded message's body, when the reader's `ctx` still allows one
    /// more level (prost checks the wire type, then the depth).
    #[inline]
    pub(crate) fn message(self, field: &'static str, ctx: u32) -> WireResult<&'r [u8]> {
        let body = self.bytes(field)?;
        if ctx == 0 {
            return Err(recursion_limit(field));
        }
        Ok(body)
    }
}

/// `bytes` as text, if it is UTF-8. Nearly every string in a trace is short
/// ASCII, for which the word-at-a-time ASCII test inlines to a few
/// instructions where `str::from_utf8` is a call with its own setup.
#[inline(always)]
pub(crate) fn utf8(bytes: &[u8]) -> Option<&str> {
    if bytes.is_ascii() {
        // SAFETY: ASCII bytes are valid UTF-8.
        return Some(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    std::str::from_utf8(bytes).ok()
}

/// Reads the fields of one message body, front to back.
pub(crate) struct Reader<'r> {
    buf: &'r [u8],
    /// The message being read, for error messages.
    message: &'static str,
}

impl<'r> Reader<'r> {
    #[inline]
    pub(crate) fn new(buf: &'r [u8], message: &'static str) -> Self {
        Reader { buf, message }
    }

    #[cold]
    #[inline(never)]
    fn error(&self, problem: Problem) -> WireError {
        WireError::new(self.message, problem)
    }

    #[inline(always)]
    fn varint(&mut self) -> WireResult<u64> {
        if let Some(&byte) = self.buf.first()
            && byte < 0x80
        {
            self.buf = &self.buf[1..];
            return Ok(u64::from(byte));
        }
        match decode_varint(self.buf) {
            Some((value, len)) => {
                self.buf = &self.buf[len..];
                Ok(value)
            }
            None => Err(self.error(Problem::InvalidVarint)),
        }
    }

    #[inline(always)]
    fn take(&mut self, len: u64) -> WireResult<&'r [u8]> {
        if len > self.buf.len() as u64 {
            return Err(self.error(Problem::BufferUnderflow));
        }
        let (head, tail) = self.buf.split_at(len as usize);
        self.buf = tail;
        Ok(head)
    }

    #[inline(always)]
    fn key(&mut self) -> WireResult<(u32, u8)> {
        // Most keys are one byte: a tag below 16 and a valid wire type.
        if let Some(&byte) = self.buf.first()
            && byte < 0x80
        {
            let wire_type = byte & 7;
            if byte >= 8 && wire_type <= FIXED32 {
                self.buf = &self.buf[1..];
                return Ok((u32::from(byte >> 3), wire_type));
            }
        }
        let key = self.varint()?;
        if key > u64::from(u32::MAX) {
            return Err(self.error(Problem::InvalidKey(key)));
        }
        let wire_type = key & 7;
        if wire_type > u64::from(FIXED32) {
            return Err(self.error(Problem::InvalidWireType(wire_type)));
        }
        let tag = (key as u32) >> 3;
        if tag == 0 {
            return Err(self.error(Problem::InvalidTag));
        }
        Ok((tag, wire_type as u8))
    }

    /// The next field, or `None` at the end of the body.
    #[inline(always)]
    pub(crate) fn next_field(&mut self) -> WireResult<Option<(u32, Value<'r>)>> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let (tag, wire_type) = self.key()?;
        let value = match wire_type {
            VARINT => Value::Varint(self.varint()?),
            FIXED64 => {
                let bytes = self.take(8)?;
                Value::Fixed64(u64::from_le_bytes(bytes.try_into().unwrap_or_default()))
            }
            LEN => {
                let len = self.varint()?;
                Value::Len(self.take(len)?)
            }
            START_GROUP => Value::StartGroup,
            END_GROUP => Value::EndGroup,
            _ => {
                let bytes = self.take(4)?;
                Value::Fixed32(u32::from_le_bytes(bytes.try_into().unwrap_or_default()))
            }
        };
        Ok(Some((tag, value)))
    }

    /// Skips a field the schema does not know, as prost's `skip_field` does
    /// with the reader's recursion budget `ctx`.
    pub(crate) fn skip_unknown(&mut self, tag: u32, value: Value<'r>, ctx: u32) -> WireResult<()> {
        if ctx == 0 {
            return Err(self.error(Problem::RecursionLimit));
        }
        match value {
            Value::StartGroup => self.skip_group(tag, ctx),
            Value::EndGroup => Err(self.error(Problem::UnexpectedEndGroup)),
            _ => Ok(()),
        }
    }

    fn skip_group(&mut self, tag: u32, ctx: u32) -> WireResult<()> {
        loop {
            let Some((inner_tag, value)) = self.next_field()? else {
                // prost reads one more key past the end of the data.
                return Err(self.error(Problem::InvalidVarint));
            };
            match value {
                Value::EndGroup if inner_tag == tag => return Ok(()),
                Value::EndGroup => return Err(self.error(Problem::UnexpectedEndGroup)),
                value => self.skip_unknown(inner_tag, value, ctx - 1)?,
            }
        }
    }
}

/// A varint and its length, with prost's limits: at most 10 bytes, and a
/// tenth byte of 0 or 1 (anything more overflows a `u64`).
#[inline]
pub(crate) fn decode_varint(buf: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &byte) in buf.iter().take(10).enumerate() {
        value |= u64::from(byte & 0x7f) << (i * 7);
        if byte < 0x80 {
            if i == 9 && byte >= 2 {
                return None;
            }
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prost_varint(mut buf: &[u8]) -> Option<(u64, usize)> {
        let before = buf.len();
        prost::encoding::decode_varint(&mut buf)
            .ok()
            .map(|v| (v, before - buf.len()))
    }

    #[test]
    fn varints_decode_as_prost_decodes_them() {
        let mut cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            vec![0x80],
            vec![0xff; 9],
            vec![0xff; 10],
            vec![0xff; 11],
        ];
        for last in 0..=0xffu8 {
            let mut ten = vec![0xff; 9];
            ten.push(last);
            cases.push(ten.clone());
            ten.push(0);
            cases.push(ten);
        }
        for value in [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX - 1, u64::MAX] {
            let mut buf = Vec::new();
            prost::encoding::encode_varint(value, &mut buf);
            for cut in 0..=buf.len() {
                cases.push(buf[..cut].to_vec());
            }
            buf.extend_from_slice(&[1, 2, 3]);
            cases.push(buf);
        }
        for case in cases {
            assert_eq!(decode_varint(&case), prost_varint(&case), "{case:x?}");
        }
    }

    #[test]
    fn keys_are_checked_like_prost() {
        for bytes in [
            &[0x00][..],                           // tag 0
            &[0x0e],                               // wire type 6
            &[0x0f],                               // wire type 7
            &[0x80, 0x80, 0x80, 0x80, 0x10],       // key above u32::MAX
            &[0x88],                               // truncated
            &[0xf8, 0xff, 0xff, 0xff, 0x0f, 0x00], // largest tag, varint 0
        ] {
            let mut ours = Reader::new(bytes, "M");
            let mut theirs = bytes;
            let prost_ok = prost::encoding::decode_key(&mut theirs).is_ok();
            assert_eq!(ours.key().is_ok(), prost_ok, "{bytes:x?}");
        }
    }

    #[test]
    fn groups_are_skipped_and_unbalanced_ones_refused() {
        // Unknown field 5 as a group holding a varint and a nested group 6.
        let body = [0x2b, 0x08, 0x01, 0x33, 0x34, 0x2c, 0x10, 0x07];
        let mut reader = Reader::new(&body, "M");
        let (tag, value) = reader.next_field().unwrap().unwrap();
        reader.skip_unknown(tag, value, 10).unwrap();
        assert_eq!(reader.next_field().unwrap(), Some((2, Value::Varint(7))));

        for bad in [&[0x2b, 0x34][..], &[0x2b, 0x08, 0x01], &[0x2c]] {
            let mut reader = Reader::new(bad, "M");
            let (tag, value) = reader.next_field().unwrap().unwrap();
            assert!(reader.skip_unknown(tag, value, 10).is_err(), "{bad:x?}");
        }
        // The recursion budget bounds group nesting too.
        let mut reader = Reader::new(&body, "M");
        let (tag, value) = reader.next_field().unwrap().unwrap();
        assert!(reader.skip_unknown(tag, value, 1).is_err());
    }

    #[test]
    fn errors_name_the_field() {
        let err = Value::Varint(1).string("Span.name").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Span.name: invalid wire type: Varint (expected LengthDelimited)"
        );
        let err = Value::Len(&[0xff]).string("Span.name").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Span.name: invalid string value: data is not UTF-8 encoded"
        );
    }
}
