//! Any bytes under each Content-Encoding and a small cap: never a panic, and
//! never more than the cap back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lighttrace_ingest::{IngestError, decompress};

const ENCODINGS: [Option<&str>; 6] = [
    None,
    Some("identity"),
    Some("gzip"),
    Some("deflate"),
    Some("x-gzip"),
    Some("br"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let encoding = ENCODINGS[usize::from(selector) % ENCODINGS.len()];
    // Small caps so that inflating past the cap is reachable.
    let cap = usize::from(selector >> 3) * 1024;
    match decompress(body, encoding, cap) {
        Ok(out) => assert!(out.len() <= cap),
        Err(IngestError::TooLarge { limit }) => assert_eq!(limit, cap),
        Err(IngestError::UnsupportedContentEncoding(e)) => {
            panic!("{e} is one of the supported encodings")
        }
        Err(IngestError::BadCompression(_)) => {}
        Err(IngestError::Malformed(_)) => panic!("decompress never reports Malformed"),
    }
});
