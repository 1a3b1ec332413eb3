//! The storage invariants, end to end through `Lake`: read-your-writes, each
//! span exactly once across flushes, crashes and restarts, torn WAL tails, and
//! backpressure.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arrow::array::{AsArray, RecordBatch};
use bytes::Bytes;
use lighttrace_model::{Attr, Source, SpanBatchBuilder, SpanKind, SpanRecord, StatusCode};
use lighttrace_storage::layout::to_table_batch;
use lighttrace_storage::{CompactionPolicy, Lake, StorageConfig, StorageError};
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use proptest::prelude::*;

const HOUR_NS: i64 = 3_600_000_000_000;
const BASE_HOUR: i64 = 490_000; // 2025-11-24

/// `n` spans of one partition; span ids encode `first_id..first_id + n`.
fn spans(project: &str, service: &str, hour_offset: i64, first_id: u64, n: u64) -> RecordBatch {
    let mut builder = SpanBatchBuilder::new();
    let attrs = [Attr::string("http.route", "/x")];
    for id in first_id..first_id + n {
        let mut trace_id = [0u8; 16];
        trace_id[..8].copy_from_slice(&(id / 4 + 1).to_be_bytes());
        let start = (BASE_HOUR + hour_offset) * HOUR_NS + (id as i64 % 1000) * 1_000_000;
        builder.append(&SpanRecord {
            project,
            trace_id,
            span_id: (id + 1).to_be_bytes(),
            parent_span_id: None,
            trace_state: None,
            service_name: service,
            name: "op",
            kind: SpanKind::Server,
            start_time_ns: start,
            end_time_ns: start + 5_000,
            status_code: StatusCode::Unset,
            status_message: None,
            attributes: &attrs,
            resource_attributes: &[],
            scope_name: None,
            scope_version: None,
            events: &[],
            links: &[],
            source: Source::Otlp,
        });
    }
    builder.finish()
}

fn config(dir: &std::path::Path) -> StorageConfig {
    let mut config = StorageConfig::new(dir);
    // Tests flush explicitly.
    config.flush_max_age = Duration::from_secs(3600);
    config
}

/// Every span id visible in the lake, with its multiplicity.
async fn visible_span_ids(lake: &Lake) -> HashMap<String, usize> {
    let snapshot = lake.snapshot();
    let mut batches: Vec<RecordBatch> = snapshot
        .buffered
        .iter()
        .flat_map(|p| p.batches.iter().cloned())
        .collect();
    let store = lake.object_store();
    for file in &snapshot.files {
        let bytes: Bytes = store
            .get(&file.object_path())
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            batches.push(to_table_batch(&batch.unwrap()).unwrap());
        }
    }
    let mut out = HashMap::new();
    for batch in batches {
        let ids = batch.column_by_name("span_id").unwrap().as_string::<i32>();
        for id in ids.iter() {
            *out.entry(id.unwrap().to_string()).or_insert(0) += 1;
        }
    }
    out
}

fn expected_ids(ranges: &[(u64, u64)]) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for &(first, n) in ranges {
        for id in first..first + n {
            out.insert(hex::encode((id + 1).to_be_bytes()), 1);
        }
    }
    out
}

#[tokio::test]
async fn writes_are_visible_at_once_and_after_flush_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let lake = reopen(&config(dir.path())).await;
    lake.write(spans("p1", "frontend", 0, 0, 10)).await.unwrap();
    lake.write(spans("p1", "../evil/x=y", 1, 10, 5))
        .await
        .unwrap();
    let ids = expected_ids(&[(0, 10), (10, 5)]);
    assert_eq!(visible_span_ids(&lake).await, ids, "read-your-writes");
    assert_eq!(lake.snapshot().files.len(), 0);

    assert!(lake.stats().buffered_bytes > 0);
    lake.flush_all().await.unwrap();
    assert_eq!(lake.stats().buffered_bytes, 0, "flushed memory is released");
    let snapshot = lake.snapshot();
    assert!(snapshot.buffered.is_empty());
    assert_eq!(snapshot.files.len(), 2);
    assert_eq!(visible_span_ids(&lake).await, ids, "after flush");
    for file in &snapshot.files {
        assert!(
            file.path.starts_with("spans/project=p1/service="),
            "{}",
            file.path
        );
        assert!(dir.path().join(&file.path).is_file(), "{}", file.path);
    }
    assert!(
        snapshot
            .files
            .iter()
            .any(|f| f.path.contains("service=%2E.%2Fevil%2Fx%3Dy/")),
        "hostile service name stays one escaped folder"
    );

    lake.write(spans("p2", "cart", 0, 100, 3)).await.unwrap();
    lake.shutdown().await.unwrap();
    drop(lake);

    let lake = reopen(&config(dir.path())).await;
    let ids = expected_ids(&[(0, 10), (10, 5), (100, 3)]);
    assert_eq!(visible_span_ids(&lake).await, ids, "after restart");
    assert!(
        lake.snapshot().buffered.is_empty(),
        "shutdown flushed everything"
    );
}

#[tokio::test]
async fn crash_replays_unflushed_spans_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let lake = reopen(&config(dir.path())).await;
    // One request spanning two partitions; only one of them gets flushed before
    // the crash, so replay must skip exactly that part.
    let mixed = arrow::compute::concat_batches(
        &lighttrace_model::spans_schema(),
        &[spans("p", "a", 0, 0, 4), spans("p", "b", 0, 4, 4)],
    )
    .unwrap();
    lake.write(mixed).await.unwrap();
    lake.write(spans("p", "a", 0, 8, 4)).await.unwrap();
    lake.flush_all().await.unwrap();
    lake.write(spans("p", "b", 0, 12, 4)).await.unwrap();
    lake.write(spans("p", "c", 2, 16, 4)).await.unwrap();
    // Crash: no shutdown, no flush.
    drop(lake);

    let lake = reopen(&config(dir.path())).await;
    let ids = expected_ids(&[(0, 20)]);
    assert_eq!(visible_span_ids(&lake).await, ids);
    // Crash again after flushing only part of the replayed data.
    lake.write(spans("p", "d", 0, 20, 4)).await.unwrap();
    drop(lake);
    let lake = reopen(&config(dir.path())).await;
    lake.flush_all().await.unwrap();
    drop(lake);
    let lake = reopen(&config(dir.path())).await;
    assert_eq!(visible_span_ids(&lake).await, expected_ids(&[(0, 24)]));
}

#[tokio::test]
async fn torn_wal_tail_keeps_the_intact_records() {
    let dir = tempfile::tempdir().unwrap();
    let lake = reopen(&config(dir.path())).await;
    for i in 0..5 {
        lake.write(spans("p", "a", 0, i * 10, 10)).await.unwrap();
    }
    drop(lake);
    let wal_dir = dir.path().join("wal");
    let mut segments: Vec<_> = std::fs::read_dir(&wal_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segments.sort();
    let last = segments.last().unwrap();
    let len = std::fs::metadata(last).unwrap().len();
    // Cut the last record in half, as a crash mid-write would.
    let file = std::fs::OpenOptions::new().write(true).open(last).unwrap();
    file.set_len(len - 100).unwrap();
    drop(file);

    let lake = reopen(&config(dir.path())).await;
    assert_eq!(visible_span_ids(&lake).await, expected_ids(&[(0, 40)]));
    // New writes continue after the damage and survive another restart.
    lake.write(spans("p", "a", 0, 1000, 2)).await.unwrap();
    drop(lake);
    let lake = reopen(&config(dir.path())).await;
    assert_eq!(
        visible_span_ids(&lake).await,
        expected_ids(&[(0, 40), (1000, 2)])
    );
}

/// A lake whose buffer holds one and a half writes of 50 spans, after one
/// such write (span ids 0..50 of project `p`, service `a`).
async fn lake_with_room_for_one_write(dir: &std::path::Path) -> Arc<Lake> {
    let mut cfg = config(dir);
    let one = spans("p", "a", 0, 0, 50);
    cfg.buffer_max_bytes = one.get_array_memory_size() * 3 / 2;
    let lake = Lake::open(cfg).await.unwrap();
    lake.write(one).await.unwrap();
    lake
}

#[tokio::test]
async fn full_buffers_refuse_writes_until_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake_with_room_for_one_write(dir.path()).await;
    match lake.write(spans("p", "a", 0, 50, 50)).await {
        Err(StorageError::Overloaded { retry_after, .. }) => assert!(retry_after > Duration::ZERO),
        other => panic!("expected Overloaded, got {other:?}"),
    }
    assert_eq!(
        visible_span_ids(&lake).await,
        expected_ids(&[(0, 50)]),
        "nothing of the refused write"
    );
    lake.flush_all().await.unwrap();
    lake.write(spans("p", "a", 0, 50, 50)).await.unwrap();
    assert_eq!(visible_span_ids(&lake).await, expected_ids(&[(0, 100)]));
}

#[tokio::test]
async fn a_cancelled_flush_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let lake = reopen(&config(dir.path())).await;
    for i in 0..8u64 {
        let service = ["a", "b", "c", "d"][i as usize % 4];
        lake.write(spans("p", service, 0, i * 100, 100))
            .await
            .unwrap();
    }
    for micros in [1, 50, 500, 5_000] {
        let _ = tokio::time::timeout(Duration::from_micros(micros), lake.flush_all()).await;
        assert_eq!(visible_span_ids(&lake).await, expected_ids(&[(0, 800)]));
    }
    lake.flush_all().await.unwrap();
    assert!(lake.snapshot().buffered.is_empty());
    assert_eq!(lake.stats().buffered_bytes, 0);
    assert_eq!(visible_span_ids(&lake).await, expected_ids(&[(0, 800)]));
    drop(lake);
    let lake = reopen(&config(dir.path())).await;
    assert_eq!(visible_span_ids(&lake).await, expected_ids(&[(0, 800)]));
}

/// Regression: shutdown used to abort the background flusher mid-flush, leaving
/// those partitions in the WAL instead of in Parquet.
#[tokio::test]
async fn shutdown_during_background_flushes_flushes_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.flush_max_age = Duration::from_millis(1);
    let lake = Lake::open(cfg.clone()).await.unwrap();
    for i in 0..40u64 {
        let service = ["a", "b", "c", "d", "e"][i as usize % 5];
        lake.write(spans("p", service, 0, i * 50, 50))
            .await
            .unwrap();
    }
    lake.shutdown().await.unwrap();
    assert!(lake.snapshot().buffered.is_empty(), "everything flushed");
    drop(lake);
    let wal_records: usize = std::fs::read_dir(dir.path().join("wal"))
        .unwrap()
        .map(|e| std::fs::metadata(e.unwrap().path()).unwrap().len() as usize)
        .filter(|&len| len > lighttrace_storage::wal::SEGMENT_HEADER_LEN)
        .count();
    assert_eq!(wal_records, 0, "the WAL is trimmed after a clean shutdown");
    let lake = reopen(&cfg).await;
    assert_eq!(visible_span_ids(&lake).await, expected_ids(&[(0, 2000)]));
}

/// Logs `(first_id, n)` instead of the spans, like a receiver logging its request.
struct RangeDecoder;

impl lighttrace_storage::WalRecordDecoder for RangeDecoder {
    fn decode(&self, kind: u8, body: &[u8]) -> Result<Vec<RecordBatch>, String> {
        assert_eq!(kind, 42);
        let word = |range: std::ops::Range<usize>| {
            body.get(range)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes)
                .ok_or_else(|| "short record".to_string())
        };
        let (first, n) = (word(0..8)?, word(8..16)?);
        Ok(vec![spans("p", "logged", 0, first, n)])
    }
}

#[tokio::test]
async fn records_logged_by_a_receiver_replay_through_its_decoder() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.wal_decoder = Some(Arc::new(RangeDecoder));
    let lake = reopen(&cfg).await;
    for (first, n) in [(0u64, 10u64), (10, 5)] {
        let body = [first.to_le_bytes(), n.to_le_bytes()].concat();
        lake.write_logged(spans("p", "logged", 0, first, n), 42, vec![body.into()])
            .await
            .unwrap();
    }
    assert!(
        lake.write_logged(spans("p", "x", 0, 99, 1), 1, vec![])
            .await
            .is_err(),
        "reserved kind"
    );
    drop(lake);
    // Without the decoder the records cannot be replayed: refuse to open.
    match reopen_result(&config(dir.path())).await {
        Err(StorageError::Wal(message)) => {
            assert!(message.contains("needs a decoder"), "{message}")
        }
        other => panic!("expected a WAL error, got {:?}", other.map(|_| ())),
    }
    let lake = reopen(&cfg).await;
    assert_eq!(visible_span_ids(&lake).await, expected_ids(&[(0, 15)]));
}

/// An intact WAL record that no longer decodes holds acknowledged spans: opening
/// must refuse (naming the segment) instead of skipping it and trimming it away.
#[tokio::test]
async fn an_undecodable_wal_record_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.wal_decoder = Some(Arc::new(RangeDecoder));
    let lake = reopen(&cfg).await;
    lake.write_logged(
        spans("p", "logged", 0, 0, 1),
        42,
        vec![Bytes::from_static(b"short")],
    )
    .await
    .unwrap();
    drop(lake);
    match reopen_result(&cfg).await {
        Err(StorageError::Wal(message)) => {
            assert!(message.contains("cannot be decoded"), "{message}");
            assert!(message.contains(".wal"), "names the segment: {message}");
        }
        other => panic!("expected a WAL error, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn catalog_checkpoints_load_back_for_writers_and_readers() {
    let dir = tempfile::tempdir().unwrap();
    let lake = reopen(&config(dir.path())).await;
    // One commit per flush: past two checkpoint intervals.
    for i in 0..70u64 {
        lake.write(spans("p", "a", 0, i, 1)).await.unwrap();
        lake.flush_all().await.unwrap();
    }
    assert_eq!(lake.snapshot().catalog_version, 70);
    drop(lake);
    let catalog = dir.path().join("_catalog");
    let names = |sub: &str| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(catalog.join(sub))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        names("checkpoints"),
        ["00000000000000000032.ltc", "00000000000000000064.ltc"],
        "the latest checkpoint and the one before it"
    );
    assert_eq!(
        names("commits").first().map(String::as_str),
        Some("00000000000000000033.ltc")
    );
    let reader = Lake::open_read_only(config(dir.path())).await.unwrap();
    assert_eq!(reader.snapshot().catalog_version, 70);
    assert_eq!(visible_span_ids(&reader).await, expected_ids(&[(0, 70)]));
    let lake = reopen(&config(dir.path())).await;
    assert_eq!(visible_span_ids(&lake).await, expected_ids(&[(0, 70)]));
}

#[tokio::test]
async fn second_process_cannot_open_the_same_directory() {
    let dir = tempfile::tempdir().unwrap();
    let _lake = Lake::open(config(dir.path())).await.unwrap();
    assert!(matches!(
        Lake::open(config(dir.path())).await,
        Err(StorageError::Locked { .. })
    ));
    // Read-only opens need no lock.
    Lake::open_read_only(config(dir.path())).await.unwrap();
}

#[tokio::test]
async fn background_flusher_flushes_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.flush_max_age = Duration::from_millis(100);
    let lake = Lake::open(cfg).await.unwrap();
    lake.write(spans("p", "a", 0, 0, 10)).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while lake.snapshot().files.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no flush by age");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(visible_span_ids(&lake).await, expected_ids(&[(0, 10)]));
}

/// Opens again after the previous handle was dropped; its background flusher may
/// hold the last reference (and so the directory lock) a moment longer.
async fn reopen_result(cfg: &StorageConfig) -> Result<Arc<Lake>, StorageError> {
    for _ in 0..500 {
        match Lake::open(cfg.clone()).await {
            Err(StorageError::Locked { .. }) => tokio::time::sleep(Duration::from_millis(10)).await,
            other => return other,
        }
    }
    panic!("the data directory stayed locked");
}

async fn reopen(cfg: &StorageConfig) -> Arc<Lake> {
    reopen_result(cfg).await.unwrap()
}

#[derive(Debug, Clone)]
enum Op {
    Write { partition: u8, n: u8 },
    Flush,
    Crash,
    Restart,
    Compact,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..4, 1u8..20).prop_map(|(partition, n)| Op::Write { partition, n }),
        1 => Just(Op::Flush),
        1 => Just(Op::Crash),
        1 => Just(Op::Restart),
        1 => Just(Op::Compact),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Model test: whatever sequence of writes, flushes, compactions, crashes
    /// and clean restarts, the lake shows exactly the acknowledged spans, once
    /// each.
    #[test]
    fn acknowledged_spans_survive_any_sequence(ops in proptest::collection::vec(op(), 1..25)) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let dir = tempfile::tempdir().unwrap();
            let mut cfg = config(dir.path());
            cfg.wal_segment_bytes = 4096; // exercise rotation and trimming
            let mut lake = Some(Lake::open(cfg.clone()).await.unwrap());
            let mut acked: Vec<(u64, u64)> = Vec::new();
            let mut next_id = 0u64;
            for op in ops {
                let current = lake.as_ref().unwrap().clone();
                match op {
                    Op::Write { partition, n } => {
                        let services = ["a", "b", "c", "d"];
                        let batch = spans("p", services[partition as usize], i64::from(partition % 2), next_id, u64::from(n));
                        current.write(batch).await.unwrap();
                        acked.push((next_id, u64::from(n)));
                        next_id += u64::from(n);
                    }
                    Op::Flush => current.flush_all().await.unwrap(),
                    Op::Crash => {
                        drop(current);
                        drop(lake.take());
                        lake = Some(reopen(&cfg).await);
                    }
                    Op::Restart => {
                        current.shutdown().await.unwrap();
                        drop(current);
                        drop(lake.take());
                        lake = Some(reopen(&cfg).await);
                    }
                    Op::Compact => {
                        current.compact(&compact_now(), SystemTime::now()).await.unwrap();
                    }
                }
                let seen = visible_span_ids(lake.as_ref().unwrap()).await;
                assert_eq!(seen, expected_ids(&acked));
            }
            let _ = Arc::strong_count(lake.as_ref().unwrap());
        });
    }
}

/// `flush_all` returns only once a flush the background flusher is in the
/// middle of has committed too: right after it, the buffer's memory is free.
/// (The flusher starts flushing as soon as the buffer is half full, so the
/// first write below races it into a flush of its own.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flush_all_waits_for_the_flush_in_progress() {
    for _ in 0..100 {
        let dir = tempfile::tempdir().unwrap();
        let lake = lake_with_room_for_one_write(dir.path()).await;
        lake.flush_all().await.unwrap();
        lake.write(spans("p", "a", 0, 50, 50)).await.unwrap();
        lake.shutdown().await.unwrap();
    }
}

/// Compacts every closed hour at once and deletes what it removed as soon as
/// no snapshot holds it.
fn compact_now() -> CompactionPolicy {
    CompactionPolicy {
        min_age: Duration::ZERO,
        delete_delay: Duration::ZERO,
        ..CompactionPolicy::default()
    }
}

fn parquet_files(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.join("spans")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn compaction_merges_closed_hours_and_keeps_every_span_once() {
    let dir = tempfile::tempdir().unwrap();
    let lake = reopen(&config(dir.path())).await;
    // Three flushes: three files in each of (a, hour 0) and (b, hour 1), one
    // in (c, hour 0).
    let mut next = 0;
    for round in 0..3 {
        lake.write(spans("p", "a", 0, next, 10)).await.unwrap();
        lake.write(spans("p", "b", 1, next + 10, 7)).await.unwrap();
        if round == 0 {
            lake.write(spans("p", "c", 0, next + 17, 3)).await.unwrap();
        }
        lake.flush_all().await.unwrap();
        next += 20;
    }
    // Buffered spans of a compacted partition stay where they are.
    lake.write(spans("p", "a", 0, 100, 5)).await.unwrap();
    let ids = expected_ids(&[(0, 10), (10, 7), (17, 3), (20, 17), (40, 17), (100, 5)]);
    assert_eq!(visible_span_ids(&lake).await, ids);
    let before = lake.snapshot();
    assert_eq!(before.files.len(), 7);

    // An hour that ended less than `min_age` ago is left alone.
    let hour_1_end = SystemTime::UNIX_EPOCH + Duration::from_secs(3600 * (BASE_HOUR as u64 + 2));
    let patient = CompactionPolicy {
        min_age: Duration::from_secs(600),
        ..compact_now()
    };
    let report = lake
        .compact(&patient, hour_1_end + Duration::from_secs(599))
        .await
        .unwrap();
    assert_eq!((report.files_in, report.files_out), (3, 1), "{report:?}");
    let report = lake
        .compact(&compact_now(), SystemTime::now())
        .await
        .unwrap();
    assert_eq!(
        (
            report.partitions,
            report.files_in,
            report.files_out,
            report.rows
        ),
        (1, 3, 1, 21),
        "{report:?}"
    );
    let after = lake.snapshot();
    assert_eq!(after.files.len(), 3);
    assert_eq!(
        visible_span_ids(&lake).await,
        ids,
        "every span once after the merge"
    );
    for file in &after.files {
        // The merge keeps the inputs' watermark and rebuilds the trace filter.
        let inputs: Vec<_> = before
            .files
            .iter()
            .filter(|f| f.partition == file.partition)
            .collect();
        assert_eq!(
            file.max_wal_seq,
            inputs.iter().map(|f| f.max_wal_seq).max().unwrap()
        );
        assert_eq!(
            file.row_count,
            inputs.iter().map(|f| f.row_count).sum::<u64>()
        );
        assert!(file.attribute_index.is_some());
    }
    // The merged file of (a, hour 0) answers for every trace of its inputs.
    let merged_a = after
        .files
        .iter()
        .find(|f| f.partition.service.as_ref() == "a")
        .unwrap();
    for id in (0..10).chain(20..30).chain(40..50) {
        let mut trace_id = [0u8; 16];
        trace_id[..8].copy_from_slice(&(id / 4 + 1u64).to_be_bytes());
        assert!(merged_a.may_contain_trace(&trace_id), "span {id}");
    }

    // `before` still holds the removed files: they stay until it is dropped.
    for file in before.files.iter().filter(|f| !after.files.contains(f)) {
        assert!(dir.path().join(&file.path).is_file(), "{}", file.path);
    }
    let removed: Vec<String> = before
        .files
        .iter()
        .filter(|f| !after.files.contains(f))
        .map(|f| f.path.clone())
        .collect();
    assert_eq!(removed.len(), 6);
    let report = lake
        .compact(&compact_now(), SystemTime::now())
        .await
        .unwrap();
    assert_eq!((report.files_in, report.files_deleted), (0, 0));
    drop(before);
    let report = lake
        .compact(&compact_now(), SystemTime::now())
        .await
        .unwrap();
    assert_eq!(report.files_deleted, 6, "{report:?}");
    for path in &removed {
        assert!(!dir.path().join(path).exists(), "{path}");
    }
    assert_eq!(parquet_files(dir.path()).len(), 3);

    // A crash now: the catalog names the merged files, the WAL replays the
    // buffered spans, and nothing is seen twice.
    drop(after);
    drop(lake);
    let lake = reopen(&config(dir.path())).await;
    assert_eq!(visible_span_ids(&lake).await, ids, "after a crash");
    assert_eq!(lake.snapshot().files.len(), 3);
    lake.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_file_no_commit_names_is_swept_once_old_enough() {
    let dir = tempfile::tempdir().unwrap();
    let lake = reopen(&config(dir.path())).await;
    lake.write(spans("p", "a", 0, 0, 10)).await.unwrap();
    lake.flush_all().await.unwrap();
    let listed = lake.snapshot().files[0].path.clone();
    // What a crash between writing a file and committing it leaves behind.
    let stray = "spans/project=p/service=a/date=2025-11-24/hour=16/0000-stray.parquet";
    std::fs::write(dir.path().join(stray), b"PAR1").unwrap();
    assert_eq!(
        lake.sweep_orphans(Duration::from_secs(3600)).await.unwrap(),
        0
    );
    assert!(dir.path().join(stray).exists(), "too young to be an orphan");
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        lake.sweep_orphans(Duration::from_millis(10)).await.unwrap(),
        1
    );
    assert!(!dir.path().join(stray).exists());
    assert!(dir.path().join(&listed).is_file(), "a listed file stays");
    assert_eq!(visible_span_ids(&lake).await, expected_ids(&[(0, 10)]));

    let reader = Lake::open_read_only(config(dir.path())).await.unwrap();
    assert!(matches!(
        reader.sweep_orphans(Duration::ZERO).await,
        Err(StorageError::ReadOnly)
    ));
    assert!(matches!(
        reader.compact(&compact_now(), SystemTime::now()).await,
        Err(StorageError::ReadOnly)
    ));
    lake.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_background_compactor_merges_closed_hours() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.compaction = CompactionPolicy {
        interval: Some(Duration::from_millis(50)),
        ..compact_now()
    };
    let lake = reopen(&cfg).await;
    for round in 0..4 {
        lake.write(spans("p", "a", 0, round * 10, 10))
            .await
            .unwrap();
        lake.flush_all().await.unwrap();
    }
    let mut files = lake.snapshot().files.len();
    for _ in 0..200 {
        files = lake.snapshot().files.len();
        if files == 1 && parquet_files(dir.path()).len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(files, 1);
    assert_eq!(
        parquet_files(dir.path()).len(),
        1,
        "the removed files are deleted"
    );
    assert_eq!(visible_span_ids(&lake).await, expected_ids(&[(0, 40)]));
    lake.shutdown().await.unwrap();
}
