//! `POST /api/{project_id}/envelope/`: the Sentry envelope receiver.
//!
//! What the unmodified Sentry SDKs send with the DSN
//! `http://KEY@HOST:PORT/PROJECT_ID`. A request goes through these steps,
//! each of which may answer early:
//!
//! 1. The project id of the URL must be 1 to 64 ASCII letters, digits, `-` or
//!    `_` (Sentry's are digits), else 400. It is the `project` of every row.
//! 2. The DSN's public key is read from `X-Sentry-Auth`, `Authorization:
//!    Sentry …`, the `sentry_key` query parameter or the envelope header's
//!    `dsn`, in that order. With projects configured (`--project ID:KEY`), it
//!    must be the key of the URL's project, else 401 and nothing is stored;
//!    without, any key (or none) will do.
//! 3. An ingest permit is taken without waiting (the pool OTLP uses), else 429.
//! 4. The body is read under `max_body_bytes` (413) and `body_read_timeout`
//!    (429); `Content-Type` is not looked at (the SDKs send
//!    `application/x-sentry-envelope`, `text/plain` or nothing).
//! 5. It is decompressed by its `Content-Encoding` (gzip, deflate, br or
//!    identity; 415 otherwise), with `max_decompressed_bytes` enforced while
//!    inflating (413), and decoded by
//!    [`lighttrace_ingest::decode_sentry_envelope`], on the blocking pool
//!    unless small. A malformed envelope is 400 with the reason.
//! 6. An envelope whose spans are all invalid (and that has nothing else) is
//!    400. Otherwise its valid spans and its error events (`event` items, rows
//!    of the `errors` table) are written together, one WAL record for both,
//!    with [`Lake::write_logged_batches`](lighttrace_storage::Lake::write_logged_batches)
//!    under [`SENTRY_ENVELOPE_WAL_KIND`]: an envelope is stored whole or not
//!    at all. Only then is the request answered 200 `{"id": "<event id>"}`.
//!    Invalid spans are dropped and counted (the answer does not say so: the
//!    SDKs would not read it).
//!
//! Overload (no ingest permit, a slow body, full storage buffers, shutdown) is
//! 429 with `Retry-After` and `X-Sentry-Rate-Limits`, which the SDKs honour by
//! holding back what they would send for that long.
//!
//! # WAL record
//!
//! Kind [`SENTRY_ENVELOPE_WAL_KIND`] (17), little-endian:
//!
//! ```text
//! [version: u8 = 1][received_at_ns: i64][fallback event id: 16 bytes]
//! [project length: u16][project: UTF-8][envelope]
//! ```
//!
//! `envelope` is the decompressed envelope reduced to the items that were
//! decoded ([`DecodedEnvelope::replayable`]): the header line as sent, then each
//! transaction, span or event item with a fresh header (`type`, `length`,
//! `content_type`) and its payload as sent. Attachments, profiles, replays and
//! the rest never reach the WAL; decompressed, replay needs no size limits and
//! never meets a compression bomb. `received_at_ns` and the fallback id are the
//! request's inputs besides the envelope, so [`SentryWalDecoder`] decodes the
//! same rows again.

use std::time::{SystemTime, UNIX_EPOCH};

use arrow::array::RecordBatch;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use lighttrace_ingest::{
    DecodedEnvelope, EnvelopePart, IngestError, SentryContext, decode_sentry_envelope, decompress,
    sentry_key_from_auth_header, sentry_key_from_query,
};
use lighttrace_storage::WalRecordDecoder;

use crate::Shared;
use crate::auth::Projects;
use crate::body::{BodyLimits, content_encoding, content_length, read_body};
use crate::error::{ApiError, ErrorFormat};
use crate::receive::INLINE_DECODE_BYTES;

/// WAL record kind of a Sentry envelope (see the module docs for its layout).
pub const SENTRY_ENVELOPE_WAL_KIND: u8 = 17;

/// The version byte of [`SENTRY_ENVELOPE_WAL_KIND`] records.
const WAL_RECORD_VERSION: u8 = 1;

/// Bytes of a record before the project name.
const WAL_HEADER_LEN: usize = 1 + 8 + 16 + 2;

/// The longest project id in a URL.
const MAX_PROJECT_ID_LEN: usize = 64;

/// Handler of `POST /api/{project_id}/envelope/`.
pub(crate) async fn envelope(
    State(shared): State<Shared>,
    Path(project_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match ingest(&shared, &project_id, query.as_deref(), &headers, body).await {
        Ok(id) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({ "id": id }).to_string(),
        )
            .into_response(),
        Err(err) => err.with_format(ErrorFormat::Sentry).into_response(),
    }
}

fn check_project_id(project_id: &str) -> Result<(), ApiError> {
    let valid = !project_id.is_empty()
        && project_id.len() <= MAX_PROJECT_ID_LEN
        && project_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        let shown: String = project_id.chars().take(MAX_PROJECT_ID_LEN).collect();
        Err(ApiError::bad_request(format!(
            "invalid project id {shown:?} in the URL: use 1 to {MAX_PROJECT_ID_LEN} \
             letters, digits, '-' or '_' (Sentry DSNs use digits)"
        )))
    }
}

/// The DSN's public key, from the request's headers or query string: the
/// `sentry_key` of `X-Sentry-Auth`, of `Authorization: Sentry …`, or of the
/// query. (The envelope header's `dsn` is the last resort, once decoded.)
pub(crate) fn sentry_key(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let header_key = |name: &str, scheme_required: bool| {
        let value = headers.get(name)?.to_str().ok()?.trim();
        if scheme_required
            && !value
                .get(..7)
                .is_some_and(|scheme| scheme.eq_ignore_ascii_case("sentry "))
        {
            return None;
        }
        sentry_key_from_auth_header(value).map(str::to_owned)
    };
    header_key("x-sentry-auth", false)
        .or_else(|| header_key(header::AUTHORIZATION.as_str(), true))
        .or_else(|| {
            query
                .and_then(sentry_key_from_query)
                .map(|k| k.into_owned())
        })
}

async fn ingest(
    shared: &Shared,
    project_id: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<String, ApiError> {
    check_project_id(project_id)?;
    let request_key = sentry_key(headers, query);
    // Held until the spans are written: it bounds the memory held by requests.
    let _permit = shared.ingest_permit()?;
    let content_encoding = content_encoding(headers)?;
    let body = read_body(
        body,
        content_length(headers),
        BodyLimits::ingest(&shared.state.config),
    )
    .await?;

    let received_at_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    let fallback_event_id = *uuid::Uuid::now_v7().as_bytes();
    let is_identity = content_encoding
        .as_deref()
        .is_none_or(|e| e.is_empty() || e.eq_ignore_ascii_case("identity"));
    let inline = is_identity && body.len() <= INLINE_DECODE_BYTES;
    let max_decompressed = shared.state.config.max_decompressed_bytes;
    let project = project_id.to_owned();
    let decode = move || {
        decode(
            &body,
            content_encoding.as_deref(),
            max_decompressed,
            &SentryContext {
                project: &project,
                received_at_ns,
                fallback_event_id,
            },
        )
    };
    let (decoded, record) = if inline {
        decode()?
    } else {
        tokio::task::spawn_blocking(decode)
            .await
            .map_err(|err| ApiError::internal("Sentry envelope decode task failed", err))??
    };
    let key = request_key.or_else(|| decoded.dsn_key.clone());
    check_key(&shared.state.config.projects, project_id, key.as_deref())?;
    tracing::debug!(
        project = project_id,
        has_key = key.is_some(),
        spans = decoded.spans.accepted,
        rejected = decoded.spans.rejected,
        errors = decoded.errors.len(),
        ignored_items = decoded.ignored_items,
        "Sentry envelope decoded"
    );

    let DecodedEnvelope {
        id, spans, errors, ..
    } = decoded;
    if spans.accepted == 0 && spans.rejected > 0 && errors.is_empty() {
        let reasons = spans
            .rejection_message
            .as_deref()
            .unwrap_or("invalid spans");
        return Err(ApiError::bad_request(format!(
            "every span was rejected ({}): {reasons}",
            spans.rejected
        )));
    }
    let batches: Vec<RecordBatch> = [spans.batch, errors.batch]
        .into_iter()
        .filter(|b| b.num_rows() > 0)
        .collect();
    if !batches.is_empty() {
        let lake = &shared.state.lake;
        if lake.config().wal_decoder.is_some() {
            lake.write_logged_batches(batches, SENTRY_ENVELOPE_WAL_KIND, record)
                .await?;
        } else {
            // A lake without receivers' decoders (tests): one record per table.
            for batch in batches {
                lake.write(batch).await?;
            }
        }
    }
    Ok(id)
}

/// With projects configured, `key` must be the key of `project_id`.
fn check_key(projects: &Projects, project_id: &str, key: Option<&str>) -> Result<(), ApiError> {
    if !projects.is_enabled() {
        return Ok(());
    }
    let Some(key) = key else {
        return Err(ApiError::unauthorized(
            "missing key: the DSN's key goes in X-Sentry-Auth (sentry_key=…)",
        ));
    };
    match projects.project_of_key(key) {
        Some(owner) if owner == project_id => Ok(()),
        Some(_) => Err(ApiError::unauthorized(format!(
            "the key is not the key of project {project_id:?}"
        ))),
        None => Err(ApiError::unauthorized("unknown key")),
    }
}

/// Decompresses and decodes an envelope; also returns its WAL record.
fn decode(
    body: &Bytes,
    content_encoding: Option<&str>,
    max_decompressed: usize,
    context: &SentryContext<'_>,
) -> Result<(DecodedEnvelope, Vec<Bytes>), IngestError> {
    let raw = decompress(body, content_encoding, max_decompressed)?;
    let decoded = decode_sentry_envelope(&raw, context)?;
    // An uncompressed envelope is logged from the body itself, without a copy.
    let raw = match raw {
        std::borrow::Cow::Borrowed(_) => body.clone(),
        std::borrow::Cow::Owned(inflated) => Bytes::from(inflated),
    };
    let record = encode_wal_record(context, &raw, &decoded.replayable);
    Ok((decoded, record))
}

/// The record's parts (see the module docs); `envelope` is the decompressed body.
fn encode_wal_record(
    context: &SentryContext<'_>,
    envelope: &Bytes,
    parts: &[EnvelopePart],
) -> Vec<Bytes> {
    let project = context.project.as_bytes();
    // The URL's project id is at most 64 bytes.
    let project_len = u16::try_from(project.len()).unwrap_or(u16::MAX);
    let mut header = Vec::with_capacity(WAL_HEADER_LEN + project.len());
    header.push(WAL_RECORD_VERSION);
    header.extend_from_slice(&context.received_at_ns.to_le_bytes());
    header.extend_from_slice(&context.fallback_event_id);
    header.extend_from_slice(&project_len.to_le_bytes());
    header.extend_from_slice(&project[..usize::from(project_len)]);
    let mut record = Vec::with_capacity(parts.len() + 1);
    record.push(Bytes::from(header));
    for part in parts {
        record.push(match part {
            EnvelopePart::Body(range) => envelope.slice(range.clone()),
            EnvelopePart::New(bytes) => Bytes::copy_from_slice(bytes),
        });
    }
    record
}

/// Replays the Sentry envelopes the receiver logged in the WAL: decoding is
/// deterministic given the record, so replay yields the rows the envelope was
/// acknowledged with.
///
/// Both tables' rows come back: the envelope's `spans` and its `errors`.
pub struct SentryWalDecoder;

impl WalRecordDecoder for SentryWalDecoder {
    fn decode(&self, kind: u8, body: &[u8]) -> Result<Vec<RecordBatch>, String> {
        if kind != SENTRY_ENVELOPE_WAL_KIND {
            return Err(format!("unknown WAL record kind {kind}"));
        }
        let header = body
            .get(..WAL_HEADER_LEN)
            .ok_or("truncated Sentry WAL record")?;
        if header[0] != WAL_RECORD_VERSION {
            return Err(format!(
                "unknown Sentry WAL record version {} (this build reads {WAL_RECORD_VERSION})",
                header[0]
            ));
        }
        let mut received_at = [0u8; 8];
        received_at.copy_from_slice(&header[1..9]);
        let mut fallback_event_id = [0u8; 16];
        fallback_event_id.copy_from_slice(&header[9..25]);
        let project_len = usize::from(u16::from_le_bytes([header[25], header[26]]));
        let project = body
            .get(WAL_HEADER_LEN..WAL_HEADER_LEN + project_len)
            .and_then(|b| std::str::from_utf8(b).ok())
            .ok_or("bad project in Sentry WAL record")?;
        let envelope = &body[WAL_HEADER_LEN + project_len..];
        let context = SentryContext {
            project,
            received_at_ns: i64::from_le_bytes(received_at),
            fallback_event_id,
        };
        decode_sentry_envelope(envelope, &context)
            .map(|decoded| {
                [decoded.spans.batch, decoded.errors.batch]
                    .into_iter()
                    .filter(|b| b.num_rows() > 0)
                    .collect()
            })
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const ENVELOPE: &[u8] = b"{\"event_id\":\"0123456789abcdef0123456789abcdef\"}\n\
        {\"type\":\"attachment\",\"length\":5}\nhello\n\
        {\"type\":\"transaction\"}\n\
        {\"transaction\":\"GET /\",\"start_timestamp\":1714564800.0,\"timestamp\":1714564801.0,\
        \"contexts\":{\"trace\":{\"trace_id\":\"0102030405060708090a0b0c0d0e0f10\",\"span_id\":\"0102030405060708\",\"op\":\"http.server\"}}}";

    fn context() -> SentryContext<'static> {
        SentryContext {
            project: "42",
            received_at_ns: 1_714_564_802_000_000_000,
            fallback_event_id: [7; 16],
        }
    }

    #[test]
    fn wal_records_decode_back_to_the_same_rows() {
        let body = Bytes::from_static(ENVELOPE);
        let (decoded, record) = decode(&body, None, 1 << 20, &context()).unwrap();
        assert_eq!(decoded.spans.accepted, 1);
        let record = record.concat();
        assert!(
            !record.windows(5).any(|w| w == b"hello"),
            "the attachment stays out of the WAL"
        );
        let replayed = SentryWalDecoder
            .decode(SENTRY_ENVELOPE_WAL_KIND, &record)
            .unwrap();
        assert_eq!(replayed, vec![decoded.spans.batch]);
        assert!(SentryWalDecoder.decode(16, &record).is_err());
        assert!(
            SentryWalDecoder
                .decode(SENTRY_ENVELOPE_WAL_KIND, &record[..10])
                .is_err()
        );
        let mut other_version = record.clone();
        other_version[0] = 2;
        let err = SentryWalDecoder
            .decode(SENTRY_ENVELOPE_WAL_KIND, &other_version)
            .unwrap_err();
        assert!(err.contains("version 2"), "{err}");
    }

    /// A record written by this version, kept as bytes: later versions must
    /// still read it.
    #[test]
    fn a_version_1_record_fixture_decodes() {
        let mut record = vec![1u8];
        record.extend_from_slice(&1_714_564_802_000_000_000i64.to_le_bytes());
        record.extend_from_slice(&[7; 16]);
        record.extend_from_slice(&2u16.to_le_bytes());
        record.extend_from_slice(b"42");
        record.extend_from_slice(b"{}\n{\"type\":\"transaction\",\"length\":177}\n{\"transaction\":\"GET /\",\"start_timestamp\":1714564800.0,\"timestamp\":1714564801.0,\"contexts\":{\"trace\":{\"trace_id\":\"0102030405060708090a0b0c0d0e0f10\",\"span_id\":\"0102030405060708\"}}}\n");
        let batches = SentryWalDecoder
            .decode(SENTRY_ENVELOPE_WAL_KIND, &record)
            .unwrap();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].num_rows(), 1);
    }

    #[test]
    fn the_key_comes_from_the_auth_header_or_the_query() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            sentry_key(&headers, Some("sentry_key=q&sentry_version=7")).as_deref(),
            Some("q")
        );
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer not-sentry"),
        );
        assert_eq!(sentry_key(&headers, None), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Sentry sentry_key=a, sentry_version=7"),
        );
        assert_eq!(
            sentry_key(&headers, Some("sentry_key=q")).as_deref(),
            Some("a")
        );
        headers.insert(
            "x-sentry-auth",
            HeaderValue::from_static("Sentry sentry_key=x, sentry_version=7"),
        );
        assert_eq!(
            sentry_key(&headers, Some("sentry_key=q")).as_deref(),
            Some("x")
        );
    }

    #[test]
    fn project_ids() {
        for good in ["1", "42", "my-project_2"] {
            assert!(check_project_id(good).is_ok(), "{good}");
        }
        for bad in ["", "..", "a/b", "a b", &"1".repeat(65), "é"] {
            assert_eq!(
                check_project_id(bad).unwrap_err().status(),
                StatusCode::BAD_REQUEST,
                "{bad}"
            );
        }
    }
}
