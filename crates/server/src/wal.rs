//! The WAL records the receivers log, and the decoder that replays them.
//!
//! | kind | receiver | record |
//! |---|---|---|
//! | 16 ([`OTLP_TRACES_WAL_KIND`]) | OTLP/HTTP and OTLP/gRPC | the decompressed export request ([`OtlpWalDecoder`]) |
//! | 17 ([`SENTRY_ENVELOPE_WAL_KIND`]) | Sentry envelopes | the decompressed envelope, decoded items only ([`SentryWalDecoder`]) |

use std::sync::Arc;

use arrow::array::RecordBatch;
use lighttrace_storage::WalRecordDecoder;

use crate::otlp::{OTLP_TRACES_WAL_KIND, OtlpWalDecoder};
use crate::sentry::{SENTRY_ENVELOPE_WAL_KIND, SentryWalDecoder};

/// Replays every kind of record this server's receivers log, by kind.
pub struct ReceiverWalDecoder;

impl WalRecordDecoder for ReceiverWalDecoder {
    fn decode(&self, kind: u8, body: &[u8]) -> Result<RecordBatch, String> {
        match kind {
            OTLP_TRACES_WAL_KIND => OtlpWalDecoder.decode(kind, body),
            SENTRY_ENVELOPE_WAL_KIND => SentryWalDecoder.decode(kind, body),
            other => Err(format!("unknown WAL record kind {other}")),
        }
    }
}

/// The decoder a lake written by this server needs (`StorageConfig::wal_decoder`).
pub fn wal_decoder() -> Arc<dyn WalRecordDecoder> {
    Arc::new(ReceiverWalDecoder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_kinds_are_refused() {
        let err = ReceiverWalDecoder.decode(18, b"").unwrap_err();
        assert_eq!(err, "unknown WAL record kind 18");
        assert!(
            ReceiverWalDecoder
                .decode(OTLP_TRACES_WAL_KIND, b"")
                .is_err()
        );
        assert!(
            ReceiverWalDecoder
                .decode(SENTRY_ENVELOPE_WAL_KIND, b"")
                .is_err()
        );
    }
}
