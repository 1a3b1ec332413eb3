//! The envelope framing: a header line, then items, each a header line and a
//! payload (of a declared `length`, or up to the next newline).

use std::borrow::Cow;
use std::ops::Range;

use serde::Deserialize;

use crate::IngestError;

/// More items than this make an envelope malformed (Relay takes at most a few
/// hundred; the bound keeps a body of tiny items from costing much CPU).
pub(crate) const MAX_ITEMS: usize = 10_000;

/// An envelope read from a body: borrowed, nothing decoded but the headers.
#[derive(Debug)]
pub struct Envelope<'a> {
    /// The header line, as sent (without its newline).
    pub header_line: &'a [u8],
    /// The envelope header's `event_id`, when it has one.
    pub event_id: Option<Cow<'a, str>>,
    /// The envelope header's `dsn`, when it has one.
    pub dsn: Option<Cow<'a, str>>,
    /// `sdk.name` / `sdk.version` of the envelope header.
    pub sdk: Sdk<'a>,
    pub items: Vec<Item<'a>>,
}

/// One item of an [`Envelope`].
#[derive(Debug)]
pub struct Item<'a> {
    /// The item header's `type`.
    pub item_type: Cow<'a, str>,
    /// The item header's `content_type`, when it has one.
    pub content_type: Option<Cow<'a, str>>,
    pub payload: &'a [u8],
    /// Where `payload` is in the body.
    pub payload_range: Range<usize>,
}

/// `sdk` of an envelope or event header.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct Sdk<'a> {
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub version: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct EnvelopeHeader<'a> {
    #[serde(borrow, default)]
    event_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    dsn: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    sdk: Option<Sdk<'a>>,
}

#[derive(Deserialize)]
struct ItemHeader<'a> {
    #[serde(rename = "type", borrow)]
    item_type: Cow<'a, str>,
    #[serde(default)]
    length: Option<u64>,
    #[serde(borrow, default)]
    content_type: Option<Cow<'a, str>>,
}

fn malformed(message: impl std::fmt::Display) -> IngestError {
    IngestError::Malformed(format!("invalid Sentry envelope: {message}"))
}

/// `serde_json`'s message without its position (the caller names the line).
fn json_reason(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    match full.strip_suffix(&position) {
        Some(message) => format!("{message} at column {}", e.column()),
        None => full,
    }
}

/// Whether `json` starts with `{` (serde would also read a struct from an array).
pub(crate) fn starts_object(json: &[u8]) -> bool {
    json.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

fn line_end(body: &[u8], from: usize) -> usize {
    body[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(body.len(), |i| from + i)
}

/// Reads the framing of `body` (already decompressed).
///
/// Follows Sentry's envelope specification: the header line is required (`{}`
/// will do); an item's payload is its declared `length` bytes followed by a
/// newline or the end of the body, or, without `length`, the rest of the line.
/// The final newline is optional. Blank lines where an item header is due are
/// skipped. Items whose type is not in `wanted` are counted, not kept.
pub(crate) fn parse<'a>(
    body: &'a [u8],
    wanted: impl Fn(&str) -> bool,
) -> Result<(Envelope<'a>, usize), IngestError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(malformed(
            "the body is empty; an envelope starts with a header line",
        ));
    }
    let header_end = line_end(body, 0);
    let header_line = &body[..header_end];
    if !starts_object(header_line) {
        return Err(malformed(
            "the first line must be the envelope header, a JSON object",
        ));
    }
    let header: EnvelopeHeader<'a> = serde_json::from_slice(header_line)
        .map_err(|e| malformed(format!("envelope header: {}", json_reason(&e))))?;
    let mut envelope = Envelope {
        header_line,
        event_id: header.event_id,
        dsn: header.dsn,
        sdk: header.sdk.unwrap_or_default(),
        items: Vec::new(),
    };
    let mut ignored = 0usize;
    let mut index = 0usize;
    let mut pos = (header_end + 1).min(body.len());
    while pos < body.len() {
        let end = line_end(body, pos);
        let line = &body[pos..end];
        pos = (end + 1).min(body.len());
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        index += 1;
        if index > MAX_ITEMS {
            return Err(malformed(format!("more than {MAX_ITEMS} items")));
        }
        if !starts_object(line) {
            return Err(malformed(format!(
                "header of item {index}: expected a JSON object"
            )));
        }
        let header: ItemHeader<'a> = serde_json::from_slice(line)
            .map_err(|e| malformed(format!("header of item {index}: {}", json_reason(&e))))?;
        let payload_range = match header.length {
            Some(length) => {
                let available = body.len() - pos;
                let length = usize::try_from(length)
                    .ok()
                    .filter(|&length| length <= available)
                    .ok_or_else(|| {
                        malformed(format!(
                            "item {index} declares a length of {length} bytes, \
                             but only {available} follow"
                        ))
                    })?;
                let range = pos..pos + length;
                pos += length;
                match body.get(pos) {
                    None => {}
                    Some(b'\n') => pos += 1,
                    Some(_) => {
                        return Err(malformed(format!(
                            "the payload of item {index} ({length} bytes) is not followed \
                             by a newline"
                        )));
                    }
                }
                range
            }
            None => {
                let end = line_end(body, pos);
                let range = pos..end;
                pos = (end + 1).min(body.len());
                range
            }
        };
        if wanted(&header.item_type) {
            envelope.items.push(Item {
                item_type: header.item_type,
                content_type: header.content_type,
                payload: &body[payload_range.clone()],
                payload_range,
            });
        } else {
            ignored += 1;
        }
    }
    Ok((envelope, ignored))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(_: &str) -> bool {
        true
    }

    fn types_and_payloads(body: &[u8]) -> Vec<(String, String)> {
        let (envelope, _) = parse(body, all).unwrap();
        envelope
            .items
            .iter()
            .map(|item| {
                (
                    item.item_type.to_string(),
                    String::from_utf8(item.payload.to_vec()).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn the_specification_examples_parse() {
        let with_length = b"{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\",\"dsn\":\"https://e12d836b15bb49d7bbf99e64295d995b:@sentry.io/42\"}\n\
            {\"type\":\"attachment\",\"length\":10,\"content_type\":\"text/plain\",\"filename\":\"hello.txt\"}\n\
            \xef\xbb\xbfHello\r\n\n\
            {\"type\":\"event\",\"length\":41,\"content_type\":\"application/json\",\"filename\":\"application.log\"}\n\
            {\"message\":\"hello world\",\"level\":\"error\"}\n";
        let (envelope, ignored) = parse(with_length, all).unwrap();
        assert_eq!(ignored, 0);
        assert_eq!(
            envelope.event_id.as_deref(),
            Some("9ec79c33ec9942ab8353589fcb2e04dc")
        );
        assert_eq!(envelope.items.len(), 2);
        assert_eq!(envelope.items[0].payload, b"\xef\xbb\xbfHello\r\n");
        assert_eq!(
            envelope.items[1].content_type.as_deref(),
            Some("application/json")
        );
        // The last newline is optional.
        let without_final_newline = &with_length[..with_length.len() - 1];
        let (envelope, _) = parse(without_final_newline, all).unwrap();
        assert_eq!(
            envelope.items[1].payload,
            br#"{"message":"hello world","level":"error"}"#
        );

        let empty_attachments = b"{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\"}\n{\"type\":\"attachment\",\"length\":0}\n\n{\"type\":\"attachment\",\"length\":0}\n\n";
        assert_eq!(
            types_and_payloads(empty_attachments),
            vec![
                ("attachment".into(), "".into()),
                ("attachment".into(), "".into())
            ]
        );
        assert_eq!(
            types_and_payloads(&empty_attachments[..empty_attachments.len() - 1]).len(),
            2
        );

        for implicit in [
            &b"{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\"}\n{\"type\":\"attachment\"}\nhelloworld\n"[..],
            b"{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\"}\n{\"type\":\"attachment\"}\nhelloworld",
        ] {
            assert_eq!(
                types_and_payloads(implicit),
                vec![("attachment".into(), "helloworld".into())]
            );
        }
        assert_eq!(
            types_and_payloads(
                b"{}\n{\"type\":\"session\"}\n{\"started\": \"2020-02-07T14:16:00Z\"}"
            ),
            vec![(
                "session".into(),
                "{\"started\": \"2020-02-07T14:16:00Z\"}".into()
            )]
        );
    }

    #[test]
    fn an_envelope_may_have_no_items_and_blank_lines_are_skipped() {
        assert!(parse(b"{}", all).unwrap().0.items.is_empty());
        assert!(parse(b"{}\n", all).unwrap().0.items.is_empty());
        assert_eq!(
            types_and_payloads(
                b"{}\n\n{\"type\":\"a\"}\nx\n\r\n\n{\"type\":\"b\",\"length\":1}\ny\n\n"
            ),
            vec![("a".into(), "x".into()), ("b".into(), "y".into())]
        );
        // A header at the very end has an empty payload.
        assert_eq!(
            types_and_payloads(b"{}\n{\"type\":\"client_report\"}"),
            vec![("client_report".into(), "".into())]
        );
    }

    #[test]
    fn items_not_wanted_are_counted_not_kept() {
        let body = b"{}\n{\"type\":\"session\"}\n{}\n{\"type\":\"transaction\",\"length\":2}\n{}\n{\"type\":\"profile\",\"length\":3}\nabc";
        let (envelope, ignored) = parse(body, |t| t == "transaction").unwrap();
        assert_eq!(ignored, 2);
        assert_eq!(envelope.items.len(), 1);
        assert_eq!(envelope.items[0].payload_range, 59..61);
    }

    #[test]
    fn malformed_envelopes_say_what_is_wrong() {
        let cases: [(&[u8], &str); 9] = [
            (b"", "the body is empty"),
            (b"\n\n", "the body is empty"),
            (b"[1]\n", "the first line must be the envelope header"),
            (b"{\"event_id\":\n", "envelope header: EOF while parsing"),
            (b"{}\n{type: 1}\n", "header of item 1: key must be a string"),
            (
                b"{}\n[\"event\"]\n",
                "header of item 1: expected a JSON object",
            ),
            (
                b"{}\n{\"length\":2}\nab",
                "header of item 1: missing field `type`",
            ),
            (
                b"{}\n{\"type\":\"event\",\"length\":100}\n{}",
                "item 1 declares a length of 100 bytes, but only 2 follow",
            ),
            (
                b"{}\n{\"type\":\"event\",\"length\":2}\n{}x\n",
                "the payload of item 1 (2 bytes) is not followed by a newline",
            ),
        ];
        for (body, want) in cases {
            let err = parse(body, all).unwrap_err().to_string();
            assert!(
                err.starts_with("invalid Sentry envelope: ") && err.contains(want),
                "{:?}: {err}",
                String::from_utf8_lossy(body)
            );
        }
        let huge = b"{}\n{\"type\":\"event\",\"length\":18446744073709551615}\n{}";
        assert!(
            parse(huge, all)
                .unwrap_err()
                .to_string()
                .contains("declares a length")
        );
    }

    #[test]
    fn too_many_items_are_refused() {
        let mut body = b"{}\n".to_vec();
        for _ in 0..=MAX_ITEMS {
            body.extend_from_slice(b"{\"type\":\"x\"}\n\n");
        }
        let err = parse(&body, all).unwrap_err().to_string();
        assert!(err.contains("more than 10000 items"), "{err}");
    }
}
