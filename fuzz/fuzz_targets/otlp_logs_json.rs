//! Any bytes as an OTLP/JSON logs export request: never a panic, and a batch
//! that agrees with the counts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lighttrace_ingest::{OtlpEncoding, decode_otlp_logs, encode_logs_response};

fuzz_target!(|data: &[u8]| {
    if let Ok(decoded) = decode_otlp_logs(data, OtlpEncoding::Json, "fuzz") {
        assert_eq!(decoded.batch.num_rows(), decoded.accepted);
        assert_eq!(decoded.rejection_message.is_some(), decoded.rejected > 0);
        let response = encode_logs_response(
            OtlpEncoding::Json,
            decoded.rejected,
            decoded.rejection_message.as_deref(),
        );
        assert!(response.starts_with(b"{"));
    }
});
