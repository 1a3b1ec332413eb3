//! [`Lake`]: the storage engine handle.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio::sync::Notify;

use crate::buffer::{Buffered, MemoryCharge, PartitionBuffer};
use crate::catalog::{CHECKPOINT_INTERVAL, CatalogState, CatalogStore, FileEntry};
use crate::compaction::{self, CompactionPolicy, CompactionReport, ORPHAN_MIN_AGE};
use crate::config::{StorageConfig, build_store, local_root, sync_local};
use crate::error::{Result, StorageError};
use crate::flush::{EncodedFile, encode_table_partition};
use crate::partition::{PartitionKey, split_by_partition};
use crate::table::Table;
use crate::wal::{self, KIND_SPANS_IPC, Wal};

/// What [`Lake::write`] returns once the spans are durable and visible.
#[derive(Debug, Clone, Copy)]
pub struct WriteReceipt {
    /// WAL sequence number of the record holding the spans (0 for an empty batch).
    pub sequence: u64,
    pub rows: usize,
}

/// The batches of one partition not yet in a committed Parquet file.
#[derive(Debug, Clone)]
pub struct BufferedPartition {
    pub key: PartitionKey,
    pub batches: Vec<RecordBatch>,
    pub rows: usize,
    pub min_start_ns: i64,
    pub max_start_ns: i64,
}

/// A consistent view of the lake: every acknowledged row is in exactly one of
/// `buffered` and `files`. Both hold every table; [`buffered_of`](Self::buffered_of)
/// and [`files_of`](Self::files_of) pick one.
#[derive(Debug, Clone)]
pub struct LakeSnapshot {
    pub buffered: Vec<BufferedPartition>,
    pub files: Vec<Arc<FileEntry>>,
    pub catalog_version: u64,
}

impl LakeSnapshot {
    /// The buffered partitions of `table`.
    pub fn buffered_of(&self, table: Table) -> impl Iterator<Item = &BufferedPartition> {
        self.buffered.iter().filter(move |p| p.key.table == table)
    }

    /// The files of `table`.
    pub fn files_of(&self, table: Table) -> impl Iterator<Item = &Arc<FileEntry>> {
        self.files
            .iter()
            .filter(move |f| f.partition.table == table)
    }
}

/// Counters for logs, `/metrics` and benches.
#[derive(Debug, Clone, Default)]
pub struct LakeStats {
    pub buffered_bytes: usize,
    pub buffered_rows: usize,
    pub buffered_partitions: usize,
    pub files: usize,
    pub catalog_version: u64,
    pub wal_segments: usize,
}

struct State {
    partitions: HashMap<PartitionKey, PartitionBuffer>,
    catalog: CatalogState,
    files: Vec<Arc<FileEntry>>,
}

impl State {
    fn oldest_unflushed_seq(&self) -> Option<u64> {
        self.partitions
            .values()
            .filter_map(|p| p.oldest_seq())
            .min()
    }
}

/// The last two catalog checkpoints this process wrote (at start: the loaded
/// version). Each checkpoint retires what the one before `last` needed.
struct Checkpoints {
    before_last: u64,
    last: u64,
}

/// A file a commit removed, waiting to be deleted from the store.
struct Retired {
    file: Arc<FileEntry>,
    since: Instant,
}

/// The storage engine: WAL, buffers, flusher and catalog of one lake.
pub struct Lake {
    config: StorageConfig,
    store: Arc<dyn ObjectStore>,
    catalog_store: CatalogStore,
    state: Arc<Mutex<State>>,
    /// Buffered bytes plus bytes reserved by writes in flight.
    buffered_bytes: Arc<AtomicUsize>,
    wal: Option<Wal>,
    shutting_down: AtomicBool,
    /// Serializes flushes and catalog commits; holds the last checkpoint version.
    commit_lock: tokio::sync::Mutex<Checkpoints>,
    flush_wanted: Arc<Notify>,
    flusher: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// One compaction at a time.
    compaction_lock: tokio::sync::Mutex<()>,
    compactor: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Wakes the background compactor to stop.
    stop_compactor: Arc<Notify>,
    /// Files compaction removed from the catalog, not yet deleted.
    retired: Mutex<Vec<Retired>>,
    _dir_lock: Option<File>,
}

fn encode_ipc(batch: &RecordBatch) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(batch.get_array_memory_size() / 2 + 64);
    out.push(KIND_SPANS_IPC);
    let mut writer = StreamWriter::try_new(&mut out, batch.schema_ref())?;
    writer.write(batch)?;
    writer.finish()?;
    drop(writer);
    Ok(out)
}

/// Kind bytes from this value up are receivers' own formats ([`Lake::write_logged`]).
pub const FIRST_RECEIVER_KIND: u8 = 16;

fn decode_record(
    payload: &[u8],
    decoder: Option<&dyn crate::WalRecordDecoder>,
) -> Result<Vec<RecordBatch>> {
    match payload.split_first() {
        Some((&kind, body)) if kind >= FIRST_RECEIVER_KIND => {
            let decoder = decoder.ok_or_else(|| {
                StorageError::Wal(format!(
                    "WAL record of kind {kind} needs a decoder (StorageConfig::wal_decoder)"
                ))
            })?;
            decoder.decode(kind, body).map_err(StorageError::Wal)
        }
        Some((&KIND_SPANS_IPC, body)) => {
            let reader = StreamReader::try_new(body, None)?;
            let mut batches = Vec::new();
            for batch in reader {
                let batch = batch?;
                let table = Table::of_schema(&batch.schema()).ok_or_else(|| {
                    StorageError::Wal("IPC record of no known table's schema".into())
                })?;
                // Re-attach the canonical schema (field metadata, nullability).
                batches.push(RecordBatch::try_new(
                    table.schema(),
                    batch.columns().to_vec(),
                )?);
            }
            Ok(batches)
        }
        Some((kind, _)) => Err(StorageError::Wal(format!("unknown WAL record kind {kind}"))),
        None => Err(StorageError::Wal("empty WAL record".into())),
    }
}

fn lock_data_dir(config: &StorageConfig) -> Result<File> {
    std::fs::create_dir_all(&config.data_dir)?;
    let path = config.data_dir.join("LOCK");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file descriptor we own; no memory is touched.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(StorageError::Locked {
            path: config.data_dir.display().to_string(),
        });
    }
    Ok(file)
}

struct Recovered {
    partitions: HashMap<PartitionKey, PartitionBuffer>,
    /// Memory of the replayed batches, charged by their slices.
    buffered_bytes: Arc<AtomicUsize>,
    segments: Vec<(u64, Option<u64>)>,
    max_seq: u64,
}

/// Replays the WAL into buffers, skipping rows already in committed files.
/// The intact records of every WAL segment, oldest first.
type WalContents = Vec<(u64, Option<u64>, Vec<wal::WalRecord>)>;

/// Reads the WAL. A segment deleted while we read (a live server trimming behind a
/// read-only reader) is skipped: its records were flushed before it was deleted.
fn read_wal(config: &StorageConfig, quiet_tail: bool) -> Result<WalContents> {
    let dir = config.data_dir.join("wal");
    let ids = wal::list_segments(&dir)?;
    let last_id = ids.last().copied();
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let (records, report) = match wal::read_segment(&dir, id) {
            Ok(read) => read,
            Err(StorageError::Io(e)) if quiet_tail && e.kind() == std::io::ErrorKind::NotFound => {
                continue;
            }
            Err(e) => return Err(e),
        };
        for problem in &report.problems {
            // A torn tail of the newest segment is what a crash mid-write leaves.
            if quiet_tail && Some(id) == last_id {
                tracing::debug!(segment = id, problem, "WAL tail still being written");
            } else {
                tracing::warn!(segment = id, problem, "WAL damage found during recovery");
            }
        }
        out.push((id, report.last_seq, records));
    }
    Ok(out)
}

/// Replays WAL records into buffers, skipping rows already in committed files.
fn replay_wal(
    config: &StorageConfig,
    catalog: &CatalogState,
    contents: WalContents,
) -> Result<Recovered> {
    let counter = Arc::new(AtomicUsize::new(0));
    let watermarks = catalog.watermarks();
    let mut recovered = Recovered {
        partitions: HashMap::new(),
        buffered_bytes: counter.clone(),
        segments: Vec::new(),
        max_seq: 0,
    };
    let (mut records_read, mut rows_replayed, mut rows_skipped) = (0usize, 0usize, 0usize);
    for (id, last_seq, records) in contents {
        recovered.segments.push((id, last_seq));
        for record in records {
            records_read += 1;
            recovered.max_seq = recovered.max_seq.max(record.seq);
            if record
                .payload
                .first()
                .is_some_and(|&k| k >= FIRST_RECEIVER_KIND)
                && config.wal_decoder.is_none()
            {
                // A configuration error, not damage: refuse rather than drop data.
                return Err(StorageError::Wal(format!(
                    "WAL record {} was logged by a receiver and needs a decoder \
                     (StorageConfig::wal_decoder) to be replayed",
                    record.seq
                )));
            }
            // An intact record (its checksum matched) that does not decode holds
            // acknowledged spans: refuse to start rather than trim them away.
            let batches =
                decode_record(&record.payload, config.wal_decoder.as_deref()).map_err(|e| {
                    StorageError::Wal(format!(
                        "WAL record {} in segment {} cannot be decoded ({e}); move \
                         {} aside to start without it",
                        record.seq,
                        id,
                        config
                            .data_dir
                            .join("wal")
                            .join(wal::segment_file_name(id))
                            .display()
                    ))
                })?;
            for batch in batches {
                let table = Table::of_schema(&batch.schema()).ok_or_else(|| {
                    StorageError::Wal(format!(
                        "WAL record {} decoded to a batch of no known table's schema",
                        record.seq
                    ))
                })?;
                let bytes = batch.get_array_memory_size();
                counter.fetch_add(bytes, Ordering::AcqRel);
                let charge = MemoryCharge::new(bytes, counter.clone());
                for (key, slices) in split_by_partition(table, &batch)? {
                    let rows: usize = slices.iter().map(|s| s.num_rows()).sum();
                    if watermarks.get(&key).is_some_and(|&mark| record.seq <= mark) {
                        rows_skipped += rows;
                        continue;
                    }
                    rows_replayed += rows;
                    for slice in slices {
                        let share = bytes * slice.num_rows() / batch.num_rows().max(1);
                        let item = Buffered::new(table, record.seq, slice, share, charge.clone());
                        recovered
                            .partitions
                            .entry(key.clone())
                            .or_default()
                            .push(item);
                    }
                }
            }
        }
    }
    if records_read > 0 {
        tracing::info!(
            records = records_read,
            rows_replayed,
            rows_already_flushed = rows_skipped,
            "WAL replayed"
        );
    }
    Ok(recovered)
}

impl Lake {
    /// Opens (or creates) the lake: loads the catalog, replays the WAL into the
    /// buffers, and starts the background flusher. Takes an exclusive lock on the
    /// data directory.
    pub async fn open(config: StorageConfig) -> Result<Arc<Lake>> {
        let dir_lock = lock_data_dir(&config)?;
        let store = build_store(&config)?;
        let catalog_store = CatalogStore::new_local(store.clone(), local_root(&config));
        let catalog = catalog_store.load().await?;
        let contents = read_wal(&config, false)?;
        let recovered = replay_wal(&config, &catalog, contents)?;
        let next_seq = recovered.max_seq.max(catalog.max_wal_seq()) + 1;
        let wal = Wal::start(
            &config.data_dir.join("wal"),
            &recovered.segments,
            next_seq,
            config.wal_segment_bytes,
        )?;
        let lake = Arc::new(Self::assemble(
            config,
            store,
            catalog_store,
            catalog,
            recovered,
            Some(wal),
            Some(dir_lock),
        ));
        let weak = Arc::downgrade(&lake);
        let handle = tokio::spawn(async move { flusher_loop(weak).await });
        *lake.flusher.lock().expect("flusher lock") = Some(handle);
        if let Some(interval) = lake.config.compaction.interval {
            let weak = Arc::downgrade(&lake);
            let stop = lake.stop_compactor.clone();
            let handle = tokio::spawn(async move { compactor_loop(weak, interval, stop).await });
            *lake.compactor.lock().expect("compactor lock") = Some(handle);
        }
        // Replayed data might already be old enough to flush.
        lake.flush_wanted.notify_one();
        Ok(lake)
    }

    /// Opens the lake for reading only (no lock, no writes, no background tasks):
    /// the catalog plus whatever intact records the WAL holds.
    pub async fn open_read_only(config: StorageConfig) -> Result<Arc<Lake>> {
        let store = build_store(&config)?;
        let catalog_store = CatalogStore::new(store.clone());
        // A server may be flushing and trimming meanwhile: read the WAL first, then
        // the catalog. A record flushed in between is then in both, and the
        // catalog's watermarks skip it; a segment trimmed before we read it was
        // flushed before that, so the catalog read afterwards has it.
        let contents = read_wal(&config, true)?;
        let mut attempts = 0;
        let catalog = loop {
            match catalog_store.load().await {
                Ok(catalog) => break catalog,
                // A checkpoint replaced (and its predecessors deleted) mid-read.
                Err(StorageError::Catalog(_)) if attempts < 3 => attempts += 1,
                Err(e) => return Err(e),
            }
        };
        let recovered = replay_wal(&config, &catalog, contents)?;
        Ok(Arc::new(Self::assemble(
            config,
            store,
            catalog_store,
            catalog,
            recovered,
            None,
            None,
        )))
    }

    fn assemble(
        config: StorageConfig,
        store: Arc<dyn ObjectStore>,
        catalog_store: CatalogStore,
        catalog: CatalogState,
        recovered: Recovered,
        wal: Option<Wal>,
        dir_lock: Option<File>,
    ) -> Lake {
        let files = catalog.files.values().cloned().collect();
        let last_checkpoint = catalog.version;
        Lake {
            config,
            store,
            catalog_store,
            state: Arc::new(Mutex::new(State {
                partitions: recovered.partitions,
                catalog,
                files,
            })),
            buffered_bytes: recovered.buffered_bytes,
            wal,
            shutting_down: AtomicBool::new(false),
            commit_lock: tokio::sync::Mutex::new(Checkpoints {
                before_last: last_checkpoint,
                last: last_checkpoint,
            }),
            flush_wanted: Arc::new(Notify::new()),
            flusher: Mutex::new(None),
            compaction_lock: tokio::sync::Mutex::new(()),
            compactor: Mutex::new(None),
            stop_compactor: Arc::new(Notify::new()),
            retired: Mutex::new(Vec::new()),
            _dir_lock: dir_lock,
        }
    }

    fn reserve(&self, bytes: usize) -> Result<()> {
        let limit = self.config.buffer_max_bytes;
        let mut current = self.buffered_bytes.load(Ordering::Acquire);
        loop {
            // An empty buffer takes any one batch, so a batch above the bound
            // cannot be refused forever.
            if current > 0 && current.saturating_add(bytes) > limit {
                self.flush_wanted.notify_one();
                return Err(StorageError::Overloaded {
                    used_bytes: current,
                    limit_bytes: limit,
                    retry_after: Duration::from_secs(1),
                });
            }
            match self.buffered_bytes.compare_exchange_weak(
                current,
                current + bytes,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => current = actual,
            }
        }
    }

    /// Appends a `spans` batch. When this returns `Ok`, the spans are fsynced in the
    /// WAL and visible to [`snapshot`](Self::snapshot). Returns
    /// [`StorageError::Overloaded`] when the buffers are at their memory bound;
    /// nothing is written then.
    pub async fn write(&self, batch: RecordBatch) -> Result<WriteReceipt> {
        self.write_inner(vec![batch], None).await
    }

    /// Like [`write`](Self::write), but the WAL keeps `body` (the parts
    /// concatenated, after kind byte `kind`, at least [`FIRST_RECEIVER_KIND`])
    /// instead of the batch itself: a receiver logs the request it decoded,
    /// typically several times smaller than the Arrow data, and
    /// [`StorageConfig::wal_decoder`](crate::StorageConfig) decodes it again on
    /// replay. The parts are copied once, into the WAL's write buffer.
    pub async fn write_logged(
        &self,
        batch: RecordBatch,
        kind: u8,
        body: Vec<Bytes>,
    ) -> Result<WriteReceipt> {
        self.write_logged_batches(vec![batch], kind, body).await
    }

    /// Like [`write_logged`](Self::write_logged) for a request that decoded to
    /// batches of several tables (a Sentry envelope: spans and errors). One WAL
    /// record holds them all: every batch is applied, or none is. The
    /// receipt's `rows` counts all of them.
    pub async fn write_logged_batches(
        &self,
        batches: Vec<RecordBatch>,
        kind: u8,
        body: Vec<Bytes>,
    ) -> Result<WriteReceipt> {
        if kind < FIRST_RECEIVER_KIND {
            return Err(StorageError::InvalidBatch(format!(
                "WAL record kinds below {FIRST_RECEIVER_KIND} are reserved"
            )));
        }
        if self.config.wal_decoder.is_none() {
            return Err(StorageError::Config(
                "write_logged needs StorageConfig::wal_decoder to replay its records".into(),
            ));
        }
        self.write_inner(batches, Some((kind, body))).await
    }

    async fn write_inner(
        &self,
        batches: Vec<RecordBatch>,
        logged: Option<(u8, Vec<Bytes>)>,
    ) -> Result<WriteReceipt> {
        let wal = self.wal.as_ref().ok_or(StorageError::ReadOnly)?;
        if self.shutting_down.load(Ordering::Acquire) {
            return Err(StorageError::ShuttingDown);
        }
        let mut tables = Vec::with_capacity(batches.len());
        for batch in &batches {
            let table = Table::of_schema(&batch.schema()).ok_or_else(|| {
                StorageError::InvalidBatch(
                    "batch schema is none of the tables' (spans, logs, errors)".into(),
                )
            })?;
            tables.push(table);
        }
        let batches: Vec<(Table, RecordBatch)> = tables
            .into_iter()
            .zip(batches)
            .filter(|(_, b)| b.num_rows() > 0)
            .collect();
        let rows: usize = batches.iter().map(|(_, b)| b.num_rows()).sum();
        if rows == 0 {
            return Ok(WriteReceipt { sequence: 0, rows });
        }
        let bytes: usize = batches.iter().map(|(_, b)| b.get_array_memory_size()).sum();
        self.reserve(bytes)?;
        // From here on, dropping the charge (on any error path too) releases it.
        let charge = MemoryCharge::new(bytes, self.buffered_bytes.clone());
        let mut parts: Vec<(PartitionKey, Vec<Buffered>)> = Vec::new();
        for (table, batch) in &batches {
            let batch_bytes = batch.get_array_memory_size();
            for (key, slices) in split_by_partition(*table, batch)? {
                let items = slices
                    .into_iter()
                    .map(|slice| {
                        let share = batch_bytes * slice.num_rows() / batch.num_rows();
                        Buffered::new(*table, 0, slice, share, charge.clone())
                    })
                    .collect();
                parts.push((key, items));
            }
        }
        drop(charge);
        let payload = match logged {
            Some((kind, body)) => {
                let mut payload = Vec::with_capacity(body.len() + 1);
                payload.push(Bytes::from(vec![kind]));
                payload.extend(body);
                payload
            }
            None => match batches.as_slice() {
                [(_, batch)] => vec![Bytes::from(encode_ipc(batch)?)],
                _ => {
                    return Err(StorageError::InvalidBatch(
                        "write takes one batch; write_logged_batches several".into(),
                    ));
                }
            },
        };
        let state = self.state.clone();
        let flush_bytes = self.config.flush_partition_bytes;
        let want_flush = Arc::new(AtomicBool::new(false));
        let want_flush_in = want_flush.clone();
        let appended = wal
            .append(payload, move |seq| {
                let mut state = state.lock().expect("lake state lock");
                for (key, items) in parts {
                    let partition = state.partitions.entry(key).or_default();
                    for mut item in items {
                        item.seq = seq;
                        partition.push(item);
                    }
                    if partition.active_bytes() >= flush_bytes {
                        want_flush_in.store(true, Ordering::Relaxed);
                    }
                }
            })
            .await;
        match appended {
            Ok(sequence) => {
                if want_flush.load(Ordering::Relaxed)
                    || self.buffered_bytes.load(Ordering::Relaxed)
                        > self.config.buffer_max_bytes / 2
                {
                    self.flush_wanted.notify_one();
                }
                Ok(WriteReceipt { sequence, rows })
            }
            // The spans were never applied; dropping them released their memory.
            Err(e) => Err(e),
        }
    }

    /// A consistent view: buffered batches and catalogued files, each span once.
    pub fn snapshot(&self) -> LakeSnapshot {
        let state = self.state.lock().expect("lake state lock");
        let mut buffered = Vec::with_capacity(state.partitions.len());
        for (key, partition) in &state.partitions {
            let items = partition.flushing.iter().chain(partition.active.iter());
            let mut out = BufferedPartition {
                key: key.clone(),
                batches: Vec::new(),
                rows: 0,
                min_start_ns: i64::MAX,
                max_start_ns: i64::MIN,
            };
            for item in items {
                out.rows += item.batch.num_rows();
                out.min_start_ns = out.min_start_ns.min(item.min_start_ns);
                out.max_start_ns = out.max_start_ns.max(item.max_start_ns);
                out.batches.push(item.batch.clone());
            }
            if out.rows > 0 {
                buffered.push(out);
            }
        }
        buffered.sort_by(|a, b| a.key.cmp(&b.key));
        LakeSnapshot {
            buffered,
            files: state.files.clone(),
            catalog_version: state.catalog.version,
        }
    }

    /// The object store rooted at the lake root (any `--store` prefix already applied);
    /// [`FileEntry::path`] is relative to it.
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    pub fn config(&self) -> &StorageConfig {
        &self.config
    }

    /// Flushes every buffered partition and commits the catalog.
    pub async fn flush_all(&self) -> Result<()> {
        if self.wal.is_none() {
            return Ok(());
        }
        // Under the commit lock: a flush the background flusher is in the
        // middle of has committed (its batches are in files, their memory
        // freed), and none starts until these partitions are flushed too.
        let mut checkpoints = self.commit_lock.lock().await;
        let keys: Vec<PartitionKey> = {
            let state = self.state.lock().expect("lake state lock");
            state
                .partitions
                .iter()
                .filter(|(_, p)| !p.active.is_empty())
                .map(|(k, _)| k.clone())
                .collect()
        };
        self.flush_locked(&mut checkpoints, keys).await
    }

    /// Stops accepting writes, flushes everything, stops background tasks.
    pub async fn shutdown(&self) -> Result<()> {
        self.shutting_down.store(true, Ordering::Release);
        // Let the flusher finish the flush it may be in, then stop.
        self.flush_wanted.notify_one();
        let flusher = self.flusher.lock().expect("flusher lock").take();
        if let Some(handle) = flusher {
            let _ = handle.await;
        }
        // A compaction in progress finishes the merge it is in (its commit
        // lands or it leaves an uncommitted file the sweep removes later).
        self.stop_compactor.notify_one();
        let compactor = self.compactor.lock().expect("compactor lock").take();
        if let Some(handle) = compactor {
            let _ = handle.await;
        }
        if let Some(wal) = &self.wal {
            // Answers every append already queued, then stops.
            wal.close();
        }
        if self.wal.is_none() {
            return Ok(());
        }
        self.flush_all().await?;
        if let Some(wal) = &self.wal {
            let oldest = self
                .state
                .lock()
                .expect("lake state lock")
                .oldest_unflushed_seq();
            wal.trim_closed(oldest)?;
        }
        Ok(())
    }

    pub fn stats(&self) -> LakeStats {
        let state = self.state.lock().expect("lake state lock");
        LakeStats {
            buffered_bytes: self.buffered_bytes.load(Ordering::Relaxed),
            buffered_rows: state
                .partitions
                .values()
                .flat_map(|p| p.flushing.iter().chain(p.active.iter()))
                .map(|b| b.batch.num_rows())
                .sum(),
            buffered_partitions: state.partitions.len(),
            files: state.files.len(),
            catalog_version: state.catalog.version,
            wal_segments: self.wal.as_ref().map_or(0, |w| w.segment_count()),
        }
    }

    /// Which partitions the flusher should write now.
    fn partitions_due(&self) -> Vec<PartitionKey> {
        let state = self.state.lock().expect("lake state lock");
        let now = Instant::now();
        let mut due = Vec::new();
        let mut candidates = Vec::new();
        for (key, partition) in &state.partitions {
            if partition.active.is_empty() || !partition.flushing.is_empty() {
                continue;
            }
            let bytes = partition.active_bytes();
            let old = partition
                .oldest_active
                .is_some_and(|t| now.duration_since(t) >= self.config.flush_max_age);
            if old || bytes >= self.config.flush_partition_bytes {
                due.push(key.clone());
            } else {
                candidates.push((bytes, key.clone()));
            }
        }
        // Under memory pressure flush everything: partitions share the memory of
        // the requests they came in, so only flushing all of them surely frees it.
        if self.buffered_bytes.load(Ordering::Relaxed) > self.config.buffer_max_bytes / 2 {
            due.extend(candidates.into_iter().map(|(_, key)| key));
        }
        due
    }

    async fn flush_partitions(&self, keys: Vec<PartitionKey>) -> Result<()> {
        if keys.is_empty() || self.wal.is_none() {
            return Ok(());
        }
        let mut checkpoints = self.commit_lock.lock().await;
        self.flush_locked(&mut checkpoints, keys).await
    }

    /// Flushes `keys` with the commit lock held (`checkpoints` is its guard).
    async fn flush_locked(
        &self,
        checkpoints: &mut Checkpoints,
        keys: Vec<PartitionKey>,
    ) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let work: Vec<(PartitionKey, Vec<Buffered>)> = {
            let mut state = self.state.lock().expect("lake state lock");
            keys.into_iter()
                .filter_map(|key| {
                    let partition = state.partitions.get_mut(&key)?;
                    if partition.active.is_empty() || !partition.flushing.is_empty() {
                        return None;
                    }
                    Some((key, partition.start_flush()))
                })
                .collect()
        };
        if work.is_empty() {
            return Ok(());
        }
        // If this future is dropped midway, the batches go back to `active`
        // (a no-op for partitions whose flush completed or was aborted).
        let _restore = RestoreOnDrop {
            state: &self.state,
            keys: work.iter().map(|(k, _)| k.clone()).collect(),
        };
        let started = Instant::now();
        let mut written: Vec<(PartitionKey, Arc<FileEntry>)> = Vec::new();
        let mut failed: Vec<PartitionKey> = Vec::new();
        let mut first_error = None;
        for (key, items) in work {
            match self.write_file(&key, &items).await {
                Ok(entry) => written.push((key, Arc::new(entry))),
                Err(e) => {
                    tracing::error!(partition = ?key, error = %e, "flush failed; will retry");
                    failed.push(key);
                    first_error.get_or_insert(e);
                }
            }
        }
        if !failed.is_empty() {
            let mut state = self.state.lock().expect("lake state lock");
            for key in &failed {
                if let Some(p) = state.partitions.get_mut(key) {
                    p.abort_flush();
                }
            }
        }
        if written.is_empty() {
            return Err(first_error.unwrap_or(StorageError::Catalog("nothing flushed".into())));
        }

        let added: Vec<Arc<FileEntry>> = written.iter().map(|(_, f)| f.clone()).collect();
        // The buffers become files in the critical section that applies the commit.
        let flushed = |state: &mut State| {
            for (key, _) in &written {
                if let Some(p) = state.partitions.get_mut(key) {
                    p.flushing.clear();
                    if p.is_empty() {
                        state.partitions.remove(key);
                    }
                }
            }
        };
        let (version, oldest) = match self.commit_locked(checkpoints, &added, &[], flushed).await {
            Ok(committed) => committed,
            Err(e) => {
                // The files stay: a failed PUT may still have stored the commit, which
                // then names them (the next commit of this version replaces it).
                tracing::error!(error = %e, "catalog commit failed; flush will be retried");
                let mut state = self.state.lock().expect("lake state lock");
                for (key, _) in &written {
                    if let Some(p) = state.partitions.get_mut(key) {
                        p.abort_flush();
                    }
                }
                return Err(e);
            }
        };
        tracing::info!(
            files = written.len(),
            rows = written.iter().map(|(_, f)| f.row_count).sum::<u64>(),
            bytes = written.iter().map(|(_, f)| f.size_bytes).sum::<u64>(),
            catalog_version = version,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "flushed"
        );
        if let Some(wal) = &self.wal
            && let Err(e) = wal.trim(oldest)
        {
            tracing::warn!(error = %e, "WAL trim failed");
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Commits `added` and `removed` as the next catalog version, then applies
    /// it to the state in one critical section together with `apply`, and
    /// writes a checkpoint when one is due. Call with the commit lock held
    /// (`checkpoints` is its guard). Returns the version and the oldest WAL
    /// sequence still only in buffers.
    async fn commit_locked(
        &self,
        checkpoints: &mut Checkpoints,
        added: &[Arc<FileEntry>],
        removed: &[String],
        apply: impl FnOnce(&mut State),
    ) -> Result<(u64, Option<u64>)> {
        let version = self.state.lock().expect("lake state lock").catalog.version + 1;
        self.catalog_store.commit(version, added, removed).await?;
        // The commit is durable: apply it in one critical section.
        let (checkpoint_state, oldest) = {
            let mut state = self.state.lock().expect("lake state lock");
            apply(&mut state);
            for path in removed {
                state.catalog.files.remove(path);
            }
            for file in added {
                state.catalog.files.insert(file.path.clone(), file.clone());
            }
            state.catalog.version = version;
            state.files = state.catalog.files.values().cloned().collect();
            let checkpoint =
                (version - checkpoints.last >= CHECKPOINT_INTERVAL).then(|| state.catalog.clone());
            (checkpoint, state.oldest_unflushed_seq())
        };
        if let Some(catalog) = checkpoint_state {
            match self
                .catalog_store
                .checkpoint(&catalog, checkpoints.before_last, checkpoints.last)
                .await
            {
                Ok(()) => {
                    checkpoints.before_last = checkpoints.last;
                    checkpoints.last = catalog.version;
                }
                Err(e) => tracing::warn!(error = %e, "catalog checkpoint failed; will retry"),
            }
        }
        Ok((version, oldest))
    }

    /// Merges the small files of closed hours under `policy`, as of `now`
    /// (see [`crate::compaction`]), then deletes the removed files whose delay
    /// has passed. Each merge is its own catalog commit; a merge that fails is
    /// logged and skipped (its inputs stay live), and the first such error is
    /// returned after the others ran.
    pub async fn compact(
        &self,
        policy: &CompactionPolicy,
        now: SystemTime,
    ) -> Result<CompactionReport> {
        if self.wal.is_none() {
            return Err(StorageError::ReadOnly);
        }
        let _one_at_a_time = self.compaction_lock.lock().await;
        let now_ns = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        let files = self.state.lock().expect("lake state lock").files.clone();
        let groups = compaction::plan(&files, policy, now_ns);
        drop(files);
        let mut report = CompactionReport::default();
        let mut partitions = HashSet::new();
        let mut first_error = None;
        for group in groups {
            if self.shutting_down.load(Ordering::Acquire) {
                break;
            }
            let started = Instant::now();
            match self.merge_group(&group).await {
                Ok(merged) => {
                    let bytes_in: u64 = group.iter().map(|f| f.size_bytes).sum();
                    tracing::info!(
                        partition = ?merged.partition,
                        files = group.len(),
                        rows = merged.row_count,
                        bytes_in,
                        bytes_out = merged.size_bytes,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "compacted"
                    );
                    partitions.insert(merged.partition.clone());
                    report.files_in += group.len();
                    report.files_out += 1;
                    report.rows += merged.row_count;
                    report.bytes_in += bytes_in;
                    report.bytes_out += merged.size_bytes;
                }
                Err(e) => {
                    tracing::warn!(partition = ?group[0].partition, error = %e, "compaction failed; inputs kept");
                    first_error.get_or_insert(e);
                }
            }
        }
        report.partitions = partitions.len();
        report.files_deleted = self.purge_retired(policy.delete_delay).await;
        match first_error {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// Merges `group` (files of one partition, in order) into one new file and
    /// commits the swap.
    async fn merge_group(&self, group: &[Arc<FileEntry>]) -> Result<Arc<FileEntry>> {
        let key = group[0].partition.clone();
        let mut images = Vec::with_capacity(group.len());
        for file in group {
            images.push(self.store.get(&file.object_path()).await?.bytes().await?);
        }
        let options = self.config.parquet.clone();
        let table = key.table;
        let encoded =
            tokio::task::spawn_blocking(move || compaction::merge_files(table, images, &options))
                .await
                .map_err(|e| StorageError::Catalog(format!("compaction task failed: {e}")))??;
        let expected: u64 = group.iter().map(|f| f.row_count).sum();
        if encoded.rows != expected {
            return Err(StorageError::Catalog(format!(
                "compaction of {key:?} read {} rows from files that list {expected}",
                encoded.rows
            )));
        }
        let max_wal_seq = group.iter().map(|f| f.max_wal_seq).max().unwrap_or(0);
        let merged = Arc::new(self.put_file(&key, encoded, max_wal_seq).await?);
        let removed: Vec<String> = group.iter().map(|f| f.path.clone()).collect();
        let mut checkpoints = self.commit_lock.lock().await;
        // Only compaction removes files, one run at a time, so the inputs are
        // still live; a commit must never remove what it did not read, though.
        let live = {
            let state = self.state.lock().expect("lake state lock");
            removed.iter().all(|p| state.catalog.files.contains_key(p))
        };
        if !live {
            drop(checkpoints);
            let _ = self.store.delete(&merged.object_path()).await;
            return Err(StorageError::Catalog(format!(
                "the files of {key:?} changed while they were compacted"
            )));
        }
        // On error the new file stays: a failed PUT may still have stored the
        // commit naming it; otherwise the orphan sweep removes it. The inputs
        // become retired in the critical section that removes them from the
        // catalog, so the sweep always finds them in one of the two.
        let retire = |_: &mut State| {
            let since = Instant::now();
            self.retired
                .lock()
                .expect("retired lock")
                .extend(group.iter().map(|file| Retired {
                    file: Arc::clone(file),
                    since,
                }));
        };
        self.commit_locked(
            &mut checkpoints,
            std::slice::from_ref(&merged),
            &removed,
            retire,
        )
        .await?;
        Ok(merged)
    }

    /// Deletes the removed files that were removed at least `delay` ago and
    /// that no snapshot of this process holds any more. Returns how many.
    async fn purge_retired(&self, delay: Duration) -> usize {
        let due: Vec<Arc<FileEntry>> = {
            let mut retired = self.retired.lock().expect("retired lock");
            let (due, kept): (Vec<Retired>, Vec<Retired>) =
                std::mem::take(&mut *retired).into_iter().partition(|r| {
                    // The state no longer lists it, so no new snapshot can take it.
                    r.since.elapsed() >= delay && Arc::strong_count(&r.file) == 1
                });
            *retired = kept;
            due.into_iter().map(|r| r.file).collect()
        };
        let mut deleted = 0;
        for file in due {
            match self.store.delete(&file.object_path()).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => deleted += 1,
                Err(e) => {
                    tracing::warn!(path = %file.path, error = %e, "cannot delete a compacted file; will retry");
                    self.retired.lock().expect("retired lock").push(Retired {
                        file,
                        since: Instant::now(),
                    });
                }
            }
        }
        deleted
    }

    /// Deletes the Parquet objects in the tables' folders that the catalog
    /// does not list and that were last modified at least `min_age` ago: the
    /// files of flushes or merges that crashed before their commit, and
    /// removed files whose deletion a restart interrupted. `min_age` must
    /// exceed the time a flush takes from writing its file to committing it.
    /// Lists the store: a maintenance task, never on a query's path. Returns
    /// how many objects it deleted.
    pub async fn sweep_orphans(&self, min_age: Duration) -> Result<usize> {
        if self.wal.is_none() {
            return Err(StorageError::ReadOnly);
        }
        let cutoff = chrono::Utc::now()
            - chrono::Duration::from_std(min_age)
                .map_err(|e| StorageError::Config(format!("orphan age {min_age:?}: {e}")))?;
        let mut deleted = 0;
        for table in Table::ALL {
            let prefix = ObjectPath::from(table.name());
            let mut orphans = Vec::new();
            let mut listing = self.store.list(Some(&prefix));
            while let Some(meta) = listing.next().await {
                if self.shutting_down.load(Ordering::Acquire) {
                    return Ok(deleted);
                }
                let meta = meta?;
                if meta.location.extension() == Some("parquet") && meta.last_modified <= cutoff {
                    orphans.push(meta.location);
                }
            }
            drop(listing);
            // Read the catalog after the listing: a file committed meanwhile is
            // then known, and an older one was listed after its commit.
            let known: HashSet<ObjectPath> = {
                let state = self.state.lock().expect("lake state lock");
                let retired = self.retired.lock().expect("retired lock");
                state
                    .catalog
                    .files
                    .values()
                    .chain(retired.iter().map(|r| &r.file))
                    .map(|f| f.object_path())
                    .collect()
            };
            for location in orphans.into_iter().filter(|l| !known.contains(l)) {
                match self.store.delete(&location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                        tracing::info!(path = %location, "deleted a file no catalog version lists");
                        deleted += 1;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(deleted)
    }

    async fn write_file(&self, key: &PartitionKey, items: &[Buffered]) -> Result<FileEntry> {
        let batches: Vec<RecordBatch> = items.iter().map(|b| b.batch.clone()).collect();
        let max_wal_seq = items.iter().map(|b| b.seq).max().unwrap_or(0);
        let options = self.config.parquet.clone();
        let table = key.table;
        let encoded =
            tokio::task::spawn_blocking(move || encode_table_partition(table, &batches, &options))
                .await
                .map_err(|e| StorageError::Wal(format!("flush task failed: {e}")))??;
        self.put_file(key, encoded, max_wal_seq).await
    }

    /// Stores `encoded` as a new file of `key` (durably, for a local store)
    /// and returns its catalog entry; the caller commits it.
    async fn put_file(
        &self,
        key: &PartitionKey,
        encoded: EncodedFile,
        max_wal_seq: u64,
    ) -> Result<FileEntry> {
        let path = format!("{}/{}.parquet", key.folder(), uuid::Uuid::now_v7().simple());
        let size_bytes = encoded.bytes.len() as u64;
        let location = ObjectPath::parse(&path)
            .map_err(|e| StorageError::InvalidBatch(format!("bad file path {path}: {e}")))?;
        self.store
            .put(&location, PutPayload::from(encoded.bytes))
            .await?;
        // The WAL is trimmed once the catalog commit lands, so the file must be
        // on disk first (a local store only renames a temporary file).
        if let Some(root) = local_root(&self.config) {
            let location = path.clone();
            tokio::task::spawn_blocking(move || sync_local(&root, &location))
                .await
                .map_err(|e| StorageError::Wal(format!("fsync task failed: {e}")))??;
        }
        Ok(FileEntry {
            path,
            size_bytes,
            row_count: encoded.rows,
            partition: key.clone(),
            min_start_ns: encoded.min_start_ns,
            max_start_ns: encoded.max_start_ns,
            min_end_ns: encoded.min_end_ns,
            max_end_ns: encoded.max_end_ns,
            max_wal_seq,
            trace_filter: encoded.trace_filter,
            attribute_index: encoded.attribute_index.map(Arc::new),
        })
    }
}

struct RestoreOnDrop<'a> {
    state: &'a Mutex<State>,
    keys: Vec<PartitionKey>,
}

impl Drop for RestoreOnDrop<'_> {
    fn drop(&mut self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for key in &self.keys {
            if let Some(p) = state.partitions.get_mut(key) {
                p.abort_flush();
            }
        }
    }
}

async fn flusher_loop(lake: std::sync::Weak<Lake>) {
    loop {
        let Some(strong) = lake.upgrade() else { return };
        if strong.shutting_down.load(Ordering::Acquire) {
            return;
        }
        let due = strong.partitions_due();
        if !due.is_empty()
            && let Err(e) = strong.flush_partitions(due).await
        {
            tracing::warn!(error = %e, "background flush failed");
        }
        let wait = strong
            .config
            .flush_max_age
            .clamp(Duration::from_millis(50), Duration::from_secs(1));
        let wanted = strong.flush_wanted.clone();
        drop(strong);
        let _ = tokio::time::timeout(wait, wanted.notified()).await;
    }
}

async fn compactor_loop(lake: std::sync::Weak<Lake>, interval: Duration, stop: Arc<Notify>) {
    let started = Instant::now();
    let mut swept = false;
    loop {
        if tokio::time::timeout(interval, stop.notified())
            .await
            .is_ok()
        {
            return;
        }
        let Some(strong) = lake.upgrade() else { return };
        if strong.shutting_down.load(Ordering::Acquire) {
            return;
        }
        let policy = strong.config.compaction.clone();
        if let Err(e) = strong.compact(&policy, SystemTime::now()).await {
            tracing::warn!(error = %e, "background compaction failed");
        }
        // Once per process: what a crash left behind. Files an earlier
        // process removed are in no catalog either, and readers of that
        // catalog get their delay: the sweep waits for it after the start.
        if !swept && started.elapsed() >= policy.delete_delay {
            swept = true;
            match strong.sweep_orphans(ORPHAN_MIN_AGE).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(files = n, "orphan sweep deleted files"),
                Err(e) => tracing::warn!(error = %e, "orphan sweep failed"),
            }
        }
    }
}
