//! `Content-Encoding` handling with a hard cap on the inflated size.

use std::borrow::Cow;
use std::io::{self, Read};

use flate2::read::{DeflateDecoder, MultiGzDecoder, ZlibDecoder};

use crate::IngestError;

/// First allocation for the inflated body, before it has shown how big it is.
const INITIAL_OUTPUT: usize = 64 * 1024;

/// The brotli decoder's input buffer (it reads the body through it).
const BROTLI_INPUT_BUFFER: usize = 4096;

/// The body as sent, inflated according to `content_encoding`.
///
/// `content_encoding` is the `Content-Encoding` header value: `None`, `""` or
/// `identity` (the body itself), `gzip` / `x-gzip`, `deflate` (zlib, as HTTP
/// specifies; a raw deflate stream, which some clients send, is accepted too),
/// or `br` (brotli, which Sentry's Python SDK sends when the `brotli` package
/// is installed). Names are case-insensitive.
///
/// No more than `max_decompressed_bytes + 1` bytes are ever inflated, so a
/// compression bomb costs at most about the cap in memory before it is refused
/// with [`IngestError::TooLarge`]. An uncompressed body over the cap is refused
/// the same way.
pub fn decompress<'a>(
    body: &'a [u8],
    content_encoding: Option<&str>,
    max_decompressed_bytes: usize,
) -> Result<Cow<'a, [u8]>, IngestError> {
    let encoding = content_encoding.map(str::trim).unwrap_or("");
    let too_large = IngestError::TooLarge {
        limit: max_decompressed_bytes,
    };
    if encoding.is_empty() || encoding.eq_ignore_ascii_case("identity") {
        return if body.len() > max_decompressed_bytes {
            Err(too_large)
        } else {
            Ok(Cow::Borrowed(body))
        };
    }
    let inflated =
        if encoding.eq_ignore_ascii_case("gzip") || encoding.eq_ignore_ascii_case("x-gzip") {
            inflate_capped(MultiGzDecoder::new(body), max_decompressed_bytes, "gzip")?
        } else if encoding.eq_ignore_ascii_case("br") {
            inflate_capped(
                brotli_decompressor::Decompressor::new(body, BROTLI_INPUT_BUFFER),
                max_decompressed_bytes,
                "br",
            )?
        } else if encoding.eq_ignore_ascii_case("deflate") {
            if looks_like_zlib(body) {
                inflate_capped(ZlibDecoder::new(body), max_decompressed_bytes, "deflate")?
            } else {
                inflate_capped(DeflateDecoder::new(body), max_decompressed_bytes, "deflate")?
            }
        } else {
            return Err(IngestError::UnsupportedContentEncoding(
                encoding.chars().take(64).collect(),
            ));
        };
    match inflated {
        Some(bytes) => Ok(Cow::Owned(bytes)),
        None => Err(too_large),
    }
}

/// A zlib header: compression method 8 and a header checksum (RFC 1950).
fn looks_like_zlib(body: &[u8]) -> bool {
    match body {
        [cmf, flg, ..] => cmf & 0x0f == 8 && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0,
        _ => false,
    }
}

/// Reads `reader` to its end; `Ok(None)` as soon as it yields more than `cap` bytes.
///
/// The buffer grows by doubling but never past `cap` bytes (nor through `Vec`'s
/// amortized growth, which could reserve up to twice that); whether more than
/// `cap` bytes would follow is probed with a one-byte read.
fn inflate_capped(
    mut reader: impl Read,
    cap: usize,
    encoding: &str,
) -> Result<Option<Vec<u8>>, IngestError> {
    let mut out: Vec<u8> = Vec::new();
    let mut filled = 0;
    loop {
        if filled == out.len() {
            if out.len() == cap {
                let mut probe = [0u8; 1];
                return match read_some(&mut reader, &mut probe, encoding)? {
                    0 => Ok(Some(out)),
                    _ => Ok(None),
                };
            }
            let grow_to = out.len().saturating_mul(2).max(INITIAL_OUTPUT).min(cap);
            out.reserve_exact(grow_to - out.len());
            out.resize(grow_to, 0);
        }
        match read_some(&mut reader, &mut out[filled..], encoding)? {
            0 => break,
            n => filled += n,
        }
    }
    out.truncate(filled);
    Ok(Some(out))
}

fn read_some(reader: &mut impl Read, buf: &mut [u8], encoding: &str) -> Result<usize, IngestError> {
    loop {
        match reader.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(IngestError::BadCompression(format!(
                    "invalid {encoding} body: {}",
                    describe(&e)
                )));
            }
        }
    }
}

fn describe(e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        "truncated stream".to_string()
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn identity_is_borrowed_and_capped() {
        for encoding in [None, Some(""), Some("identity"), Some(" Identity ")] {
            let out = decompress(b"abc", encoding, 3).unwrap();
            assert!(matches!(out, Cow::Borrowed(b"abc")));
            assert!(matches!(
                decompress(b"abcd", encoding, 3),
                Err(IngestError::TooLarge { limit: 3 })
            ));
        }
    }

    #[test]
    fn gzip_inflates() {
        let data = b"hello hello hello hello".repeat(1000);
        let body = gzip(&data);
        for encoding in ["gzip", "GZIP", "x-gzip"] {
            let out = decompress(&body, Some(encoding), data.len()).unwrap();
            assert_eq!(&*out, &data[..]);
        }
        assert!(matches!(
            decompress(&body, Some("gzip"), data.len() - 1),
            Err(IngestError::TooLarge { .. })
        ));
    }

    #[test]
    fn concatenated_gzip_members_are_one_body() {
        let mut body = gzip(b"first ");
        body.extend(gzip(b"second"));
        let out = decompress(&body, Some("gzip"), 1024).unwrap();
        assert_eq!(&*out, b"first second");
    }

    #[test]
    fn deflate_accepts_zlib_and_raw_streams() {
        let data = b"deflate me ".repeat(100);
        let mut zlib = ZlibEncoder::new(Vec::new(), Compression::default());
        zlib.write_all(&data).unwrap();
        let zlib = zlib.finish().unwrap();
        let mut raw = DeflateEncoder::new(Vec::new(), Compression::default());
        raw.write_all(&data).unwrap();
        let raw = raw.finish().unwrap();
        assert!(looks_like_zlib(&zlib));
        for body in [zlib, raw] {
            let out = decompress(&body, Some("deflate"), 10_000).unwrap();
            assert_eq!(&*out, &data[..]);
        }
    }

    #[test]
    fn bad_gzip_is_bad_compression() {
        let err = decompress(b"this is not gzip", Some("gzip"), 1024).unwrap_err();
        assert!(matches!(err, IngestError::BadCompression(_)), "{err:?}");
        assert!(err.to_string().starts_with("invalid gzip body: "), "{err}");

        let body = gzip(&b"some body that is long enough".repeat(50));
        let err = decompress(&body[..body.len() / 2], Some("gzip"), 1 << 20).unwrap_err();
        assert_eq!(err.to_string(), "invalid gzip body: truncated stream");

        let mut corrupt = body.clone();
        let middle = corrupt.len() / 2;
        corrupt[middle] ^= 0xff;
        corrupt[middle + 1] ^= 0x55;
        let err = decompress(&corrupt, Some("gzip"), 1 << 20).unwrap_err();
        assert!(matches!(err, IngestError::BadCompression(_)), "{err:?}");
    }

    #[test]
    fn empty_gzip_body_is_bad_compression() {
        // A gzip stream has at least a header; an empty body is not one.
        let err = decompress(b"", Some("gzip"), 1024).unwrap_err();
        assert_eq!(err.to_string(), "invalid gzip body: truncated stream");
    }

    fn brotli(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut writer = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        writer.write_all(data).unwrap();
        drop(writer);
        out
    }

    #[test]
    fn brotli_inflates_under_the_cap() {
        let data = b"brotli brotli brotli ".repeat(1000);
        let body = brotli(&data);
        for encoding in ["br", "BR", " br "] {
            let out = decompress(&body, Some(encoding), data.len()).unwrap();
            assert_eq!(&*out, &data[..]);
        }
        assert!(matches!(
            decompress(&body, Some("br"), data.len() - 1),
            Err(IngestError::TooLarge { .. })
        ));
    }

    #[test]
    fn bad_brotli_is_bad_compression() {
        let body = brotli(&b"some body that is long enough".repeat(50));
        let err = decompress(&body[..body.len() / 2], Some("br"), 1 << 20).unwrap_err();
        assert!(matches!(err, IngestError::BadCompression(_)), "{err:?}");
        assert!(err.to_string().starts_with("invalid br body: "), "{err}");
        let err = decompress(b"\xff\xff\xff not brotli", Some("br"), 1 << 20).unwrap_err();
        assert!(matches!(err, IngestError::BadCompression(_)), "{err:?}");
    }

    #[test]
    fn brotli_bomb_stops_at_the_cap() {
        let bomb = brotli(&vec![0u8; 50 << 20]);
        assert!(bomb.len() < 64 * 1024, "bomb is {} bytes", bomb.len());
        let err = decompress(&bomb, Some("br"), 1 << 20).unwrap_err();
        assert!(matches!(err, IngestError::TooLarge { limit } if limit == 1 << 20));
    }

    #[test]
    fn unknown_encodings_are_unsupported() {
        for encoding in ["zstd", "gzip, br", "compress"] {
            let err = decompress(b"x", Some(encoding), 1024).unwrap_err();
            assert!(
                matches!(&err, IngestError::UnsupportedContentEncoding(e) if e == encoding),
                "{err:?}"
            );
        }
    }

    #[test]
    fn gzip_bomb_stops_at_the_cap() {
        // 100 MiB of zeros, streamed into the encoder in 1 MiB chunks.
        let zeros = vec![0u8; 1 << 20];
        let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
        for _ in 0..100 {
            encoder.write_all(&zeros).unwrap();
        }
        let bomb = encoder.finish().unwrap();
        assert!(bomb.len() < 200 * 1024, "bomb is {} bytes", bomb.len());
        let err = decompress(&bomb, Some("gzip"), 1 << 20).unwrap_err();
        assert!(matches!(err, IngestError::TooLarge { limit } if limit == 1 << 20));
        assert_eq!(err.to_string(), "decompressed body exceeds 1048576 bytes");
    }

    #[test]
    fn output_buffer_never_exceeds_cap_plus_one() {
        let data = vec![7u8; 300_000];
        let body = gzip(&data);
        for cap in [0, 1, 200_000, 299_999] {
            let out = inflate_capped(MultiGzDecoder::new(&body[..]), cap, "gzip").unwrap();
            assert!(out.is_none(), "cap {cap}");
        }
        for cap in [300_000, 300_001, 10_000_000] {
            let out = inflate_capped(MultiGzDecoder::new(&body[..]), cap, "gzip")
                .unwrap()
                .unwrap();
            assert_eq!(out, data);
            assert!(
                out.capacity() <= cap,
                "capacity {} > cap {cap}",
                out.capacity()
            );
        }
        let empty = gzip(b"");
        let out = inflate_capped(MultiGzDecoder::new(&empty[..]), 0, "gzip").unwrap();
        assert_eq!(out, Some(vec![]));
    }
}
