//! Any bytes as a (decompressed) Sentry envelope: never a panic, a batch that
//! agrees with the counts, and a replayable envelope that decodes to the same
//! rows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lighttrace_ingest::{SentryContext, decode_sentry_envelope, parse_sentry_envelope};

fuzz_target!(|data: &[u8]| {
    let _ = parse_sentry_envelope(data);
    let context = SentryContext {
        project: "fuzz",
        received_at_ns: 1_714_564_800_000_000_000,
        fallback_event_id: [7; 16],
    };
    if let Ok(decoded) = decode_sentry_envelope(data, &context) {
        assert_eq!(decoded.spans.batch.num_rows(), decoded.spans.accepted);
        assert_eq!(
            decoded.spans.rejection_message.is_some(),
            decoded.spans.rejected > 0
        );
        assert_eq!(decoded.id.len(), 32);
        let replayable = decoded.replayable_bytes(data);
        let again = decode_sentry_envelope(&replayable, &context)
            .expect("the replayable envelope decodes");
        assert_eq!(again.spans.batch, decoded.spans.batch);
        assert_eq!(again.errors.batch, decoded.errors.batch);
    }
});
