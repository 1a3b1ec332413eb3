//! What every receiver (of spans or log records) does once it holds a request
//! body, and the WAL records it leaves behind.
//!
//! [`ingest_records`] decompresses and decodes the body (on the blocking pool
//! unless it is small), refuses a request whose every span (or log record) is
//! invalid (400), and otherwise writes the valid ones with
//! [`Lake::write_logged`](lighttrace_storage::Lake::write_logged), which routes
//! the batch to its table by its schema: the WAL keeps the decompressed
//! request, a fraction of the Arrow data's size, and [`ReceiverWalDecoder`]
//! decodes it again on replay. When it returns `Ok`, the records are durable
//! and visible.
//!
//! # WAL records
//!
//! One kind byte per receiver (at least
//! [`FIRST_RECEIVER_KIND`](lighttrace_storage::FIRST_RECEIVER_KIND)), then the
//! same body for each:
//!
//! ```text
//! [encoding: u8][project length: u16 LE][project: UTF-8][request: decompressed body]
//! ```
//!
//! | kind | receiver | encoding byte |
//! |---|---|---|
//! | 16 ([`OTLP_TRACES_WAL_KIND`]) | OTLP traces, HTTP and gRPC | 0 protobuf, 1 JSON |
//! | 18 ([`ZIPKIN_WAL_KIND`]) | Zipkin v2 `POST /api/v2/spans` | 0 JSON, 1 protobuf |
//! | 19 ([`OTLP_LOGS_WAL_KIND`]) | OTLP logs, HTTP (`POST /v1/logs`) and gRPC | 0 protobuf, 1 JSON |
//!
//! The Sentry envelope receiver (`sentry.rs`) has its own path and record
//! layout, kind 17 ([`SENTRY_ENVELOPE_WAL_KIND`]): an envelope also carries
//! error events, answers with an event id, and replays with the time it was
//! received; `sentry.rs` documents its bytes.
//!
//! Decoding is deterministic, so replay yields the rows the request was
//! acknowledged with. A record of a kind this server does not know fails the
//! replay loudly rather than dropping acknowledged spans or log records.

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::RecordBatch;
use bytes::Bytes;
use lighttrace_ingest::{DecodedLogs, DecodedSpans, IngestError, decompress};
use lighttrace_storage::WalRecordDecoder;

use crate::Shared;
use crate::error::ApiError;
use crate::otlp::{OTLP_LOGS_WAL_KIND, OTLP_TRACES_WAL_KIND, OtlpLogsWalDecoder, OtlpWalDecoder};
use crate::sentry::{SENTRY_ENVELOPE_WAL_KIND, SentryWalDecoder};
use crate::zipkin::{ZIPKIN_WAL_KIND, ZipkinWalDecoder};

/// Bodies up to this size, uncompressed, are decoded on the request's task; larger
/// ones on the blocking pool so they do not hold up the reactor.
pub(crate) const INLINE_DECODE_BYTES: usize = 64 * 1024;

/// A receiver, as [`ingest_records`] needs to know it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Receiver {
    /// For logs and internal errors: `OTLP`, `Zipkin`.
    pub name: &'static str,
    /// What its requests hold a list of, for messages: `span`, `log record`.
    pub item: &'static str,
    /// Its WAL record kind.
    pub wal_kind: u8,
    /// The encoding byte of its WAL records (see the module docs).
    pub wal_encoding: u8,
}

/// What a receiver's decoder made of a request.
#[derive(Debug)]
pub(crate) struct Decoded {
    /// The valid records, of one table's schema.
    pub batch: RecordBatch,
    pub accepted: usize,
    pub rejected: usize,
    pub rejection_message: Option<String>,
}

impl From<DecodedSpans> for Decoded {
    fn from(d: DecodedSpans) -> Self {
        Decoded {
            batch: d.batch,
            accepted: d.accepted,
            rejected: d.rejected,
            rejection_message: d.rejection_message,
        }
    }
}

impl From<DecodedLogs> for Decoded {
    fn from(d: DecodedLogs) -> Self {
        Decoded {
            batch: d.batch,
            accepted: d.accepted,
            rejected: d.rejected,
            rejection_message: d.rejection_message,
        }
    }
}

/// What became of a request that was acknowledged.
#[derive(Debug)]
pub(crate) struct Ingested {
    /// Spans (or log records) left out as invalid.
    pub rejected: usize,
    /// Why, for the client.
    pub rejection_message: Option<String>,
}

/// Decompresses `body` (its `Content-Encoding`), decodes it with `decode`
/// (given the decompressed bytes and the project), and writes the valid spans
/// or log records to the lake, logging the request under the receiver's WAL
/// kind; see the module docs.
pub(crate) async fn ingest_records<F, D>(
    shared: &Shared,
    receiver: Receiver,
    body: Bytes,
    content_encoding: Option<String>,
    project: &str,
    decode: F,
) -> Result<Ingested, ApiError>
where
    F: FnOnce(&[u8], &str) -> Result<D, IngestError> + Send + 'static,
    D: Into<Decoded> + Send + 'static,
{
    let is_identity = content_encoding
        .as_deref()
        .is_none_or(|e| e.is_empty() || e.eq_ignore_ascii_case("identity"));
    let inline = is_identity && body.len() <= INLINE_DECODE_BYTES;
    let max_decompressed = shared.state.config.max_decompressed_bytes;
    let project = project.to_owned();
    let run = move || -> Result<(Decoded, Option<Vec<Bytes>>), IngestError> {
        let raw = decompress(&body, content_encoding.as_deref(), max_decompressed)?;
        let decoded = decode(&raw, &project)?.into();
        // An uncompressed request is logged from the body itself, without a copy.
        let raw = match raw {
            Cow::Borrowed(_) => body.clone(),
            Cow::Owned(inflated) => Bytes::from(inflated),
        };
        Ok((
            decoded,
            encode_request_record(receiver.wal_encoding, &project, raw),
        ))
    };
    let (decoded, wal_record) = if inline {
        run()?
    } else {
        tokio::task::spawn_blocking(run).await.map_err(|err| {
            ApiError::internal(&format!("{} decode task failed", receiver.name), err)
        })??
    };

    let Decoded {
        batch,
        accepted,
        rejected,
        rejection_message,
    } = decoded;
    if accepted == 0 && rejected > 0 {
        // Nothing to keep: the request as a whole is invalid (OTLP: 400 /
        // INVALID_ARGUMENT, not a partial success).
        let item = receiver.item;
        let reasons = rejection_message.unwrap_or_default();
        return Err(ApiError::bad_request(format!(
            "every {item} was rejected ({rejected}): {reasons}"
        )));
    }
    if batch.num_rows() > 0 {
        let lake = &shared.state.lake;
        if let (Some(record), true) = (wal_record, lake.config().wal_decoder.is_some()) {
            lake.write_logged(batch, receiver.wal_kind, record).await?;
        } else {
            lake.write(batch).await?;
        }
    }
    tracing::debug!(
        receiver = receiver.name,
        item = receiver.item,
        accepted,
        rejected,
        "ingested"
    );
    Ok(Ingested {
        rejected,
        rejection_message,
    })
}

/// A request's WAL record body (see the module docs), in two parts (header,
/// request); `None` for a project name too long for its length field (the
/// batch is then logged as Arrow instead).
pub(crate) fn encode_request_record(
    encoding: u8,
    project: &str,
    request: Bytes,
) -> Option<Vec<Bytes>> {
    let project = project.as_bytes();
    let project_len = u16::try_from(project.len()).ok()?;
    let mut header = Vec::with_capacity(3 + project.len());
    header.push(encoding);
    header.extend_from_slice(&project_len.to_le_bytes());
    header.extend_from_slice(project);
    Some(vec![Bytes::from(header), request])
}

/// A request record read back: `(encoding, project, request)`. `receiver`
/// names it in errors.
pub(crate) fn decode_request_record<'b>(
    receiver: &str,
    body: &'b [u8],
) -> Result<(u8, &'b str, &'b [u8]), String> {
    let (&encoding, rest) = body
        .split_first()
        .ok_or_else(|| format!("empty {receiver} WAL record"))?;
    let len = rest
        .get(..2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
        .ok_or_else(|| format!("truncated {receiver} WAL record"))?;
    let project = rest
        .get(2..2 + len)
        .and_then(|b| std::str::from_utf8(b).ok())
        .ok_or_else(|| format!("bad project in {receiver} WAL record"))?;
    Ok((encoding, project, &rest[2 + len..]))
}

/// Replays the WAL records of every receiver of this server, by kind.
pub struct ReceiverWalDecoder;

impl WalRecordDecoder for ReceiverWalDecoder {
    fn decode(&self, kind: u8, body: &[u8]) -> Result<Vec<RecordBatch>, String> {
        match kind {
            OTLP_TRACES_WAL_KIND => OtlpWalDecoder.decode(kind, body),
            SENTRY_ENVELOPE_WAL_KIND => SentryWalDecoder.decode(kind, body),
            ZIPKIN_WAL_KIND => ZipkinWalDecoder.decode(kind, body),
            OTLP_LOGS_WAL_KIND => OtlpLogsWalDecoder.decode(kind, body),
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
    fn request_records_round_trip() {
        let record = encode_request_record(7, "p1", Bytes::from_static(b"body"))
            .unwrap()
            .concat();
        assert_eq!(record, b"\x07\x02\x00p1body");
        assert_eq!(
            decode_request_record("X", &record),
            Ok((7, "p1", &b"body"[..]))
        );
        assert!(encode_request_record(0, &"p".repeat(70_000), Bytes::new()).is_none());
        for cut in [0, 1, 2, 4] {
            assert!(decode_request_record("X", &record[..cut]).is_err(), "{cut}");
        }
    }

    #[test]
    fn unknown_kinds_fail_the_replay() {
        let err = ReceiverWalDecoder.decode(99, b"").unwrap_err();
        assert_eq!(err, "unknown WAL record kind 99");
        for kind in [
            OTLP_TRACES_WAL_KIND,
            SENTRY_ENVELOPE_WAL_KIND,
            ZIPKIN_WAL_KIND,
        ] {
            assert!(ReceiverWalDecoder.decode(kind, b"").is_err(), "{kind}");
        }
    }
}
