//! Append-only Utf8 and attribute-map columns for [`crate::SpanBatchBuilder`].
//!
//! Arrow's `StringBuilder` copies every value with a `memcpy` call and
//! re-derives its offset and null count on each append; for the few dozen
//! short strings of every span (ids, names, attribute keys and values) that
//! was a third of OTLP decoding. These columns copy short strings inline and
//! hand their buffers to Arrow unchanged at the end. The arrays are the ones
//! the Arrow builders would build: same data types, same values, a null buffer
//! only when a null was appended.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanBufferBuilder, MapArray, StringArray, StructArray};
use arrow::buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::DataType;

use crate::schema::attribute_map_type;

/// A Utf8 column under construction.
#[derive(Debug)]
pub(crate) struct TextColumn {
    /// Only whole `&str`s are ever appended, so this is valid UTF-8 and every
    /// offset is on a char boundary (what `StringArray::new_unchecked` needs).
    bytes: Vec<u8>,
    /// Starts with 0; one more entry than there are values.
    offsets: Vec<i32>,
    /// Validity, once a null has been appended.
    nulls: Option<BooleanBufferBuilder>,
}

/// Two hex digits for every byte value.
static HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        pairs[i] = [DIGITS[i >> 4], DIGITS[i & 0xf]];
        i += 1;
    }
    pairs
};

impl TextColumn {
    pub(crate) fn with_capacity(values: usize, bytes: usize) -> Self {
        let mut offsets = Vec::with_capacity(values + 1);
        offsets.push(0);
        TextColumn {
            bytes: Vec::with_capacity(bytes),
            offsets,
            nulls: None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    #[inline(always)]
    fn end_value(&mut self) {
        // Callers keep a batch's text far below 2 GiB (the ingest budget);
        // past that Arrow's own builder panics too.
        let end = i32::try_from(self.bytes.len()).expect("string column offset overflow");
        self.offsets.push(end);
        if let Some(nulls) = &mut self.nulls {
            nulls.append(true);
        }
    }

    #[inline(always)]
    pub(crate) fn append(&mut self, value: &str) {
        extend_short(&mut self.bytes, value.as_bytes());
        self.end_value();
    }

    pub(crate) fn append_null(&mut self) {
        let len = self.len();
        let nulls = self.nulls.get_or_insert_with(|| {
            let mut nulls = BooleanBufferBuilder::new(self.offsets.capacity());
            nulls.append_n(len, true);
            nulls
        });
        nulls.append(false);
        self.offsets.push(*self.offsets.last().unwrap_or(&0));
    }

    /// A null for `None` and for the empty string.
    #[inline]
    pub(crate) fn append_non_empty(&mut self, value: Option<&str>) {
        match value {
            Some(value) if !value.is_empty() => self.append(value),
            _ => self.append_null(),
        }
    }

    /// `bytes` in lowercase hex.
    #[inline]
    pub(crate) fn append_hex(&mut self, bytes: &[u8]) {
        self.bytes.reserve(bytes.len() * 2);
        for &b in bytes {
            self.bytes.extend_from_slice(&HEX_PAIRS[usize::from(b)]);
        }
        self.end_value();
    }

    /// Appends every value of `run`.
    fn append_run(&mut self, run: &TextRun) {
        let base = self.bytes.len();
        self.bytes.extend_from_slice(run.text.as_bytes());
        self.offsets.reserve(run.ends.len());
        for &end in &run.ends {
            let end = i32::try_from(base + end).expect("string column offset overflow");
            self.offsets.push(end);
        }
        if let Some(nulls) = &mut self.nulls {
            nulls.append_n(run.ends.len(), true);
        }
    }

    /// The column so far; the column is empty afterwards.
    pub(crate) fn finish(&mut self) -> StringArray {
        let offsets = std::mem::replace(&mut self.offsets, vec![0]);
        let bytes = std::mem::take(&mut self.bytes);
        let nulls = self.nulls.take().map(|mut n| NullBuffer::new(n.finish()));
        debug_assert!(std::str::from_utf8(&bytes).is_ok());
        // SAFETY: offsets start at 0 and never decrease (each is the length of
        // `bytes` after an append), the last is `bytes.len()`, and `bytes` is a
        // concatenation of `&str`s cut only between them, so every value is
        // valid UTF-8; the null buffer, when present, has one bit per value.
        unsafe {
            StringArray::new_unchecked(
                OffsetBuffer::new_unchecked(ScalarBuffer::from(offsets)),
                Buffer::from_vec(bytes),
                nulls,
            )
        }
    }
}

/// Copies `src` to the end of `dst`. Most values here are under 32 bytes,
/// where a call to `memcpy` costs more than the copy; two overlapping
/// fixed-size moves cover any length in a size class.
#[inline(always)]
fn extend_short(dst: &mut Vec<u8>, src: &[u8]) {
    let len = src.len();
    if len > 32 {
        dst.extend_from_slice(src);
        return;
    }
    dst.reserve(len);
    let at = dst.len();
    // SAFETY: `reserve` made room for `len` more bytes after `at`; every read
    // below is within `src` and every write within `dst[at..at + len]`, and
    // those bytes are all written before `set_len`.
    unsafe {
        let s = src.as_ptr();
        let d = dst.as_mut_ptr().add(at);
        if len >= 16 {
            let head = s.cast::<u128>().read_unaligned();
            let tail = s.add(len - 16).cast::<u128>().read_unaligned();
            d.cast::<u128>().write_unaligned(head);
            d.add(len - 16).cast::<u128>().write_unaligned(tail);
        } else if len >= 8 {
            let head = s.cast::<u64>().read_unaligned();
            let tail = s.add(len - 8).cast::<u64>().read_unaligned();
            d.cast::<u64>().write_unaligned(head);
            d.add(len - 8).cast::<u64>().write_unaligned(tail);
        } else if len >= 4 {
            let head = s.cast::<u32>().read_unaligned();
            let tail = s.add(len - 4).cast::<u32>().read_unaligned();
            d.cast::<u32>().write_unaligned(head);
            d.add(len - 4).cast::<u32>().write_unaligned(tail);
        } else if len > 0 {
            *d = *s;
            *d.add(len / 2) = *s.add(len / 2);
            *d.add(len - 1) = *s.add(len - 1);
        }
        dst.set_len(at + len);
    }
}

/// Values appended to many rows at once: their text and where each ends.
#[derive(Debug, Clone, Default)]
pub(crate) struct TextRun {
    text: String,
    ends: Vec<usize>,
}

impl TextRun {
    pub(crate) fn push(&mut self, value: &str) {
        self.text.push_str(value);
        self.ends.push(self.text.len());
    }
}

/// The `keys` and `values` of a `map<utf8, utf8>` column under construction,
/// with no null maps and no null keys or values.
#[derive(Debug)]
pub(crate) struct AttrMapColumn {
    pub(crate) keys: TextColumn,
    pub(crate) values: TextColumn,
    offsets: Vec<i32>,
}

impl AttrMapColumn {
    pub(crate) fn with_capacity(
        rows: usize,
        entries: usize,
        key_bytes: usize,
        value_bytes: usize,
    ) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        AttrMapColumn {
            keys: TextColumn::with_capacity(entries, key_bytes),
            values: TextColumn::with_capacity(entries, value_bytes),
            offsets,
        }
    }

    #[inline(always)]
    pub(crate) fn push(&mut self, key: &str, value: &str) {
        self.keys.append(key);
        self.values.append(value);
    }

    /// Appends the entries of `keys` and `values` (of equal length).
    pub(crate) fn push_runs(&mut self, keys: &TextRun, values: &TextRun) {
        self.keys.append_run(keys);
        self.values.append_run(values);
    }

    /// Ends the current row's map.
    #[inline]
    pub(crate) fn end_row(&mut self) {
        let entries = i32::try_from(self.keys.len()).expect("map offset overflow");
        self.offsets.push(entries);
    }

    pub(crate) fn finish(&mut self) -> ArrayRef {
        let DataType::Map(entries_field, sorted) = attribute_map_type() else {
            unreachable!("attribute_map_type is a map")
        };
        let DataType::Struct(fields) = entries_field.data_type().clone() else {
            unreachable!("map entries are a struct")
        };
        let keys: ArrayRef = Arc::new(self.keys.finish());
        let values: ArrayRef = Arc::new(self.values.finish());
        let entries = StructArray::new(fields, vec![keys, values], None);
        let offsets = std::mem::replace(&mut self.offsets, vec![0]);
        Arc::new(MapArray::new(
            entries_field,
            OffsetBuffer::new(ScalarBuffer::from(offsets)),
            entries,
            None,
            sorted,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, StringBuilder};

    #[test]
    fn text_columns_equal_arrow_string_builders() {
        let long = "x".repeat(100);
        let values: Vec<Option<&str>> = (0..=40)
            .map(|len| Some(&long[..len]))
            .chain([None, Some("é🎉ü"), Some(""), None, Some(&long[..])])
            .collect();
        for with_nulls in [false, true] {
            let mut ours = TextColumn::with_capacity(0, 0);
            let mut arrow = StringBuilder::new();
            for _ in 0..3 {
                for value in &values {
                    match value {
                        None if !with_nulls => {}
                        None => {
                            ours.append_null();
                            arrow.append_null();
                        }
                        Some(v) => {
                            ours.append(v);
                            arrow.append_value(v);
                        }
                    }
                }
                let (ours, arrow) = (ours.finish(), arrow.finish());
                assert_eq!(ours, arrow);
                assert_eq!(ours.nulls().is_some(), arrow.nulls().is_some());
            }
        }
    }

    #[test]
    fn hex_is_lowercase_pairs() {
        let mut column = TextColumn::with_capacity(1, 0);
        column.append_hex(&[0x00, 0x0f, 0xa5, 0xff]);
        assert_eq!(column.finish().value(0), "000fa5ff");
    }
}
