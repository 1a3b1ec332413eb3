//! Any bytes as an OTLP/protobuf export request: never a panic, and a batch
//! that agrees with the counts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lighttrace_ingest::{OtlpEncoding, decode_otlp_traces, encode_traces_response};

fuzz_target!(|data: &[u8]| {
    if let Ok(decoded) = decode_otlp_traces(data, OtlpEncoding::Protobuf, "fuzz") {
        assert_eq!(decoded.batch.num_rows(), decoded.accepted);
        assert_eq!(decoded.rejection_message.is_some(), decoded.rejected > 0);
        assert!(
            decoded
                .rejection_message
                .as_ref()
                .is_none_or(|m| m.len() < 4096)
        );
        let _ = encode_traces_response(
            OtlpEncoding::Protobuf,
            decoded.rejected,
            decoded.rejection_message.as_deref(),
        );
    }
});
