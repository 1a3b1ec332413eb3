//! Any bytes through both OTLP/protobuf logs decoders: the borrowing wire
//! decoder must give what the prost one gives (same batch, counts and
//! rejection message), or both must refuse the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lighttrace_ingest::{
    IngestError, OtlpEncoding, decode_otlp_logs, decode_otlp_logs_protobuf_with_prost,
};

fuzz_target!(|data: &[u8]| {
    let ours = decode_otlp_logs(data, OtlpEncoding::Protobuf, "fuzz");
    let reference = decode_otlp_logs_protobuf_with_prost(data, "fuzz");
    match (ours, reference) {
        (Ok(ours), Ok(reference)) => {
            assert_eq!(ours.batch.num_rows(), ours.accepted);
            assert_eq!(ours.accepted, reference.accepted);
            assert_eq!(ours.rejected, reference.rejected);
            assert_eq!(ours.rejection_message, reference.rejection_message);
            assert!(ours.batch == reference.batch, "batches differ");
        }
        (Err(IngestError::Malformed(ours)), Err(IngestError::Malformed(reference))) => {
            // Wire errors are worded differently; refusals of valid protobuf
            // (nesting, expansion budget) are the same message.
            if reference.starts_with("invalid OTLP protobuf: ") {
                assert!(ours.starts_with("invalid OTLP protobuf: "), "{ours} / {reference}");
            } else {
                assert_eq!(ours, reference);
            }
        }
        (ours, reference) => panic!(
            "outcomes differ: ours {:?}, prost {:?}",
            ours.map(|d| d.accepted),
            reference.map(|d| d.accepted)
        ),
    }
});
