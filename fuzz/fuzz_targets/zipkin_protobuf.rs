//! Any bytes as a Zipkin proto3 `ListOfSpans`: never a panic, and a batch that
//! agrees with the counts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lighttrace_ingest::{ZipkinEncoding, decode_zipkin_spans};

fuzz_target!(|data: &[u8]| {
    if let Ok(decoded) = decode_zipkin_spans(data, ZipkinEncoding::Protobuf, "fuzz") {
        assert_eq!(decoded.batch.num_rows(), decoded.accepted);
        assert_eq!(decoded.rejection_message.is_some(), decoded.rejected > 0);
    }
});
