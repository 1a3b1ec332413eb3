//! The write-ahead log: what makes an acknowledged span durable.
//!
//! # Durability
//!
//! [`Wal::append`] returns `Ok(seq)` only after the record is written and
//! `fdatasync`ed, and after the caller's `on_durable` callback (which makes the
//! spans visible to queries) has run. Appends from many tasks are grouped: one
//! writer thread takes everything queued, writes it, syncs once, and then answers
//! every caller of the group (group commit). Sequence numbers are assigned by that
//! thread, so `on_durable` callbacks run in sequence order.
//!
//! # Byte layout (format version 1)
//!
//! A WAL is a folder of segments named `<segment id, 20 digits>.wal` (a new one
//! is written as `….wal.tmp` and renamed once its header is synced). Each starts
//! with a 24-byte header:
//!
//! ```text
//! offset 0   magic          8 bytes  "LTWALSEG"
//! offset 8   format version u16 LE   1
//! offset 10  flags          u16 LE   0
//! offset 12  segment id     u64 LE
//! offset 20  header crc     u32 LE   CRC-32 (IEEE) of bytes 0..20
//! ```
//!
//! followed by records:
//!
//! ```text
//! payload length  u32 LE
//! crc             u32 LE   CRC-32 (IEEE) of the sequence bytes and the payload
//! sequence        u64 LE   strictly increasing across the whole WAL
//! payload         `length` bytes: a kind byte, then the body
//! ```
//!
//! Kind 1 is a `spans` batch as an Arrow IPC stream. Kinds from 16 up are what a
//! receiver logged in its own format (16: an OTLP trace export request, see
//! `lighttrace-server`), decoded again on replay by `StorageConfig::wal_decoder`.
//!
//! # Recovery
//!
//! Reading stops at a torn tail (a record cut short by a crash) and reports it. A
//! record whose checksum does not match is reported and skipped; the records after
//! it are still recovered. A segment with a bad header is reported and skipped.
//! New writes always go to a new segment, so recovered segments are never appended to.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;

use bytes::Bytes;

use crate::error::{Result, StorageError};

pub const SEGMENT_MAGIC: [u8; 8] = *b"LTWALSEG";
pub const FORMAT_VERSION: u16 = 1;
pub const SEGMENT_HEADER_LEN: usize = 24;
pub const RECORD_HEADER_LEN: usize = 16;
/// Record payloads above this are refused on write and treated as corruption on read.
pub const MAX_PAYLOAD_LEN: usize = 1 << 30;

/// Payload kind: a `spans` batch as an Arrow IPC stream.
pub const KIND_SPANS_IPC: u8 = 1;

/// One intact record read back from a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalRecord {
    pub seq: u64,
    /// Kind byte followed by the body.
    pub payload: Vec<u8>,
}

/// What reading one segment found.
#[derive(Debug, Clone, Default)]
pub struct SegmentReport {
    pub segment_id: u64,
    pub records: usize,
    /// Bytes up to the end of the last intact record.
    pub valid_bytes: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Checksum failures and torn tails, for the log.
    pub problems: Vec<String>,
}

pub fn segment_file_name(id: u64) -> String {
    format!("{id:020}.wal")
}

fn parse_segment_file_name(name: &str) -> Option<u64> {
    name.strip_suffix(".wal")?.parse().ok()
}

pub fn encode_segment_header(segment_id: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut header = [0u8; SEGMENT_HEADER_LEN];
    header[..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[12..20].copy_from_slice(&segment_id.to_le_bytes());
    let crc = crc32fast::hash(&header[..20]);
    header[20..24].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Appends one encoded record to `out`.
pub fn encode_record(seq: u64, payload: &[u8], out: &mut Vec<u8>) {
    encode_record_parts(seq, &[payload], out);
}

/// Appends one encoded record whose payload is `parts` concatenated: callers
/// hand over what they already hold (a request body, a small header) and the
/// bytes are copied once, into the group's write buffer.
pub fn encode_record_parts<P: AsRef<[u8]>>(seq: u64, parts: &[P], out: &mut Vec<u8>) {
    let len: usize = parts.iter().map(|p| p.as_ref().len()).sum();
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq.to_le_bytes());
    for part in parts {
        hasher.update(part.as_ref());
    }
    out.reserve(RECORD_HEADER_LEN + len);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&hasher.finalize().to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    for part in parts {
        out.extend_from_slice(part.as_ref());
    }
}

/// Decodes a whole segment image. Never fails: problems are reported.
pub fn decode_segment(bytes: &[u8]) -> (Vec<WalRecord>, SegmentReport) {
    let mut report = SegmentReport::default();
    let mut records = Vec::new();
    if bytes.len() < SEGMENT_HEADER_LEN {
        report.problems.push(format!(
            "segment header torn: {} of {SEGMENT_HEADER_LEN} bytes",
            bytes.len()
        ));
        return (records, report);
    }
    let header = &bytes[..SEGMENT_HEADER_LEN];
    if header[..8] != SEGMENT_MAGIC {
        report.problems.push("not a WAL segment: bad magic".into());
        return (records, report);
    }
    let version = u16::from_le_bytes([header[8], header[9]]);
    let stored_crc = u32::from_le_bytes(header[20..24].try_into().expect("4 bytes"));
    if crc32fast::hash(&header[..20]) != stored_crc {
        report
            .problems
            .push("segment header checksum mismatch".into());
        return (records, report);
    }
    if version != FORMAT_VERSION {
        report
            .problems
            .push(format!("unsupported WAL format version {version}"));
        return (records, report);
    }
    report.segment_id = u64::from_le_bytes(header[12..20].try_into().expect("8 bytes"));

    let mut offset = SEGMENT_HEADER_LEN;
    report.valid_bytes = offset as u64;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        if rest.len() < RECORD_HEADER_LEN {
            report.problems.push(format!(
                "torn record header at offset {offset}: {} trailing bytes",
                rest.len()
            ));
            break;
        }
        let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
        let seq = u64::from_le_bytes(rest[8..16].try_into().expect("8 bytes"));
        if len > MAX_PAYLOAD_LEN || rest.len() - RECORD_HEADER_LEN < len {
            report.problems.push(format!(
                "torn record at offset {offset}: needs {len} payload bytes, {} remain",
                rest.len() - RECORD_HEADER_LEN
            ));
            break;
        }
        let payload = &rest[RECORD_HEADER_LEN..RECORD_HEADER_LEN + len];
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&seq.to_le_bytes());
        hasher.update(payload);
        offset += RECORD_HEADER_LEN + len;
        if hasher.finalize() != crc {
            report.problems.push(format!(
                "checksum mismatch in record at offset {}: skipped",
                offset - RECORD_HEADER_LEN - len
            ));
            continue;
        }
        report.valid_bytes = offset as u64;
        report.records += 1;
        report.first_seq.get_or_insert(seq);
        report.last_seq = Some(seq);
        records.push(WalRecord {
            seq,
            payload: payload.to_vec(),
        });
    }
    (records, report)
}

/// Segment ids in `dir`, ascending.
pub fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let mut ids = Vec::new();
    match fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry?;
                if let Some(id) = entry.file_name().to_str().and_then(parse_segment_file_name) {
                    ids.push(id);
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Reads one segment file.
pub fn read_segment(dir: &Path, id: u64) -> Result<(Vec<WalRecord>, SegmentReport)> {
    let mut bytes = Vec::new();
    File::open(dir.join(segment_file_name(id)))?.read_to_end(&mut bytes)?;
    let (records, mut report) = decode_segment(&bytes);
    // The file name is the id, also when the header was unreadable.
    report.segment_id = id;
    Ok((records, report))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A segment known to the writer, for trimming.
#[derive(Debug, Clone)]
struct SegmentInfo {
    id: u64,
    last_seq: Option<u64>,
}

type OnDurable = Box<dyn FnOnce(u64) + Send>;

struct AppendRequest {
    /// The payload, in parts.
    payload: Vec<Bytes>,
    payload_len: usize,
    on_durable: OnDurable,
    reply: tokio::sync::oneshot::Sender<std::result::Result<u64, String>>,
}

/// The WAL writer: a dedicated thread doing group commit.
pub struct Wal {
    dir: PathBuf,
    sender: Mutex<Option<mpsc::Sender<AppendRequest>>>,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
    /// Closed segments (recovered ones and rotated ones) plus the open one, last.
    segments: Arc<Mutex<Vec<SegmentInfo>>>,
}

impl Wal {
    /// Starts a writer on a new segment after `recovered` (the ids found at startup,
    /// with their last sequence numbers). The first record gets `next_seq`.
    pub fn start(
        dir: &Path,
        recovered: &[(u64, Option<u64>)],
        next_seq: u64,
        segment_bytes: u64,
    ) -> Result<Wal> {
        fs::create_dir_all(dir)?;
        let mut segments: Vec<SegmentInfo> = recovered
            .iter()
            .map(|&(id, last_seq)| SegmentInfo { id, last_seq })
            .collect();
        let first_id = segments.last().map_or(1, |s| s.id + 1);
        let file = create_segment(dir, first_id)?;
        segments.push(SegmentInfo {
            id: first_id,
            last_seq: None,
        });
        let segments = Arc::new(Mutex::new(segments));
        let (sender, receiver) = mpsc::channel();
        let writer = Writer {
            dir: dir.to_path_buf(),
            file,
            segment_id: first_id,
            segment_len: SEGMENT_HEADER_LEN as u64,
            segment_bytes,
            next_seq,
            segments: segments.clone(),
            failed: None,
        };
        let thread = thread::Builder::new()
            .name("lighttrace-wal".into())
            .spawn(move || writer.run(receiver))?;
        Ok(Wal {
            dir: dir.to_path_buf(),
            sender: Mutex::new(Some(sender)),
            thread: Mutex::new(Some(thread)),
            segments,
        })
    }

    /// Appends one record whose payload is `payload` concatenated (kind byte
    /// first). `on_durable(seq)` runs on the writer thread after the record is
    /// synced and before this returns; it must be quick.
    pub async fn append(
        &self,
        payload: Vec<Bytes>,
        on_durable: impl FnOnce(u64) + Send + 'static,
    ) -> Result<u64> {
        let payload_len: usize = payload.iter().map(Bytes::len).sum();
        if payload_len > MAX_PAYLOAD_LEN {
            return Err(StorageError::Wal(format!(
                "record of {payload_len} bytes exceeds the {MAX_PAYLOAD_LEN} byte limit"
            )));
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        let request = AppendRequest {
            payload,
            payload_len,
            on_durable: Box::new(on_durable),
            reply,
        };
        {
            let sender = self.sender.lock().expect("wal sender lock");
            let sender = sender.as_ref().ok_or(StorageError::ShuttingDown)?;
            sender
                .send(request)
                .map_err(|_| StorageError::Wal("WAL writer stopped".into()))?;
        }
        match answer.await {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(message)) => Err(StorageError::Wal(message)),
            Err(_) => Err(StorageError::Wal("WAL writer stopped".into())),
        }
    }

    /// Deletes closed segments whose records all have a sequence below
    /// `oldest_unflushed` (`None`: nothing is unflushed). Returns how many.
    pub fn trim(&self, oldest_unflushed: Option<u64>) -> Result<usize> {
        self.trim_segments(oldest_unflushed, false)
    }

    /// Like [`trim`](Self::trim), after [`close`](Self::close): the last segment
    /// is closed too and may go.
    pub fn trim_closed(&self, oldest_unflushed: Option<u64>) -> Result<usize> {
        let stopped = self.sender.lock().expect("wal sender lock").is_none();
        self.trim_segments(oldest_unflushed, stopped)
    }

    fn trim_segments(&self, oldest_unflushed: Option<u64>, include_last: bool) -> Result<usize> {
        let mut segments = self.segments.lock().expect("wal segments lock");
        let open = if include_last {
            segments.len()
        } else {
            segments.len().saturating_sub(1)
        };
        let mut removed = 0;
        let mut keep = Vec::with_capacity(segments.len());
        for (i, segment) in segments.drain(..).enumerate() {
            let done = match (segment.last_seq, oldest_unflushed) {
                (None, _) => true,
                (Some(_), None) => true,
                (Some(last), Some(oldest)) => last < oldest,
            };
            if i < open && done {
                match fs::remove_file(self.dir.join(segment_file_name(segment.id))) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => removed += 1,
                    Err(e) => {
                        tracing::warn!(segment = segment.id, error = %e, "could not delete WAL segment");
                        keep.push(segment);
                    }
                }
            } else {
                keep.push(segment);
            }
        }
        *segments = keep;
        if removed > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(removed)
    }

    pub fn segment_count(&self) -> usize {
        self.segments.lock().expect("wal segments lock").len()
    }

    /// Stops the writer after it has answered everything queued.
    pub fn close(&self) {
        drop(self.sender.lock().expect("wal sender lock").take());
        if let Some(thread) = self.thread.lock().expect("wal thread lock").take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.close();
    }
}

/// Creates segment `id` with its header. The header is written and synced
/// under a temporary name that [`list_segments`] does not list, then the file
/// is renamed into place: a reader of a live WAL (or recovery after a crash)
/// never sees a segment whose header is not all there. A temporary file left
/// by a crash is replaced.
fn create_segment(dir: &Path, id: u64) -> Result<File> {
    let path = dir.join(segment_file_name(id));
    if path.exists() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("WAL segment {} exists", path.display()),
        )
        .into());
    }
    let temporary = dir.join(format!("{}.tmp", segment_file_name(id)));
    match fs::remove_file(&temporary) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&temporary)?;
    file.write_all(&encode_segment_header(id))?;
    file.sync_all()?;
    fs::rename(&temporary, &path)?;
    sync_dir(dir)?;
    Ok(file)
}

struct Writer {
    dir: PathBuf,
    file: File,
    segment_id: u64,
    segment_len: u64,
    segment_bytes: u64,
    next_seq: u64,
    segments: Arc<Mutex<Vec<SegmentInfo>>>,
    /// After an I/O error nothing more is acknowledged: the file state is unknown.
    failed: Option<String>,
}

/// Most bytes one group writes before syncing.
const MAX_GROUP_BYTES: usize = 32 << 20;

impl Writer {
    fn run(mut self, receiver: mpsc::Receiver<AppendRequest>) {
        let mut buffer = Vec::with_capacity(1 << 20);
        while let Ok(first) = receiver.recv() {
            let mut group = vec![first];
            let mut group_bytes = group[0].payload_len;
            while group_bytes < MAX_GROUP_BYTES {
                match receiver.try_recv() {
                    Ok(next) => {
                        group_bytes += next.payload_len;
                        group.push(next);
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(group, &mut buffer);
        }
        let _ = self.file.sync_data();
    }

    fn commit_group(&mut self, group: Vec<AppendRequest>, buffer: &mut Vec<u8>) {
        if let Some(message) = &self.failed {
            for request in group {
                let _ = request.reply.send(Err(message.clone()));
            }
            return;
        }
        buffer.clear();
        let first_seq = self.next_seq;
        for request in &group {
            encode_record_parts(self.next_seq, &request.payload, buffer);
            self.next_seq += 1;
        }
        let result = self
            .file
            .write_all(buffer)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = result {
            let message = format!("WAL write failed: {e}");
            tracing::error!(segment = self.segment_id, error = %e, "WAL write failed; refusing further writes");
            self.failed = Some(message.clone());
            for request in group {
                let _ = request.reply.send(Err(message.clone()));
            }
            return;
        }
        self.segment_len += buffer.len() as u64;
        let last_seq = self.next_seq - 1;
        if let Some(open) = self.segments.lock().expect("wal segments lock").last_mut() {
            open.last_seq = Some(last_seq);
        }
        for (i, request) in group.into_iter().enumerate() {
            let seq = first_seq + i as u64;
            (request.on_durable)(seq);
            let _ = request.reply.send(Ok(seq));
        }
        if self.segment_len >= self.segment_bytes {
            self.rotate();
        }
    }

    fn rotate(&mut self) {
        let id = self.segment_id + 1;
        match create_segment(&self.dir, id) {
            Ok(file) => {
                self.file = file;
                self.segment_id = id;
                self.segment_len = SEGMENT_HEADER_LEN as u64;
                self.segments
                    .lock()
                    .expect("wal segments lock")
                    .push(SegmentInfo { id, last_seq: None });
            }
            Err(e) => {
                // Keep appending to the current segment; it only grows past its target.
                tracing::warn!(error = %e, "could not start a new WAL segment");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn segment_image(records: &[(u64, &[u8])]) -> Vec<u8> {
        let mut bytes = encode_segment_header(7).to_vec();
        for (seq, payload) in records {
            encode_record(*seq, payload, &mut bytes);
        }
        bytes
    }

    #[test]
    fn format_is_stable() {
        // A fixture of format version 1, written by hand from the documented layout.
        let mut fixture = Vec::new();
        fixture.extend_from_slice(b"LTWALSEG");
        fixture.extend_from_slice(&1u16.to_le_bytes());
        fixture.extend_from_slice(&0u16.to_le_bytes());
        fixture.extend_from_slice(&7u64.to_le_bytes());
        let crc = crc32fast::hash(&fixture);
        fixture.extend_from_slice(&crc.to_le_bytes());
        let payload = [KIND_SPANS_IPC, 0xAA, 0xBB];
        fixture.extend_from_slice(&3u32.to_le_bytes());
        let mut h = crc32fast::Hasher::new();
        h.update(&42u64.to_le_bytes());
        h.update(&payload);
        fixture.extend_from_slice(&h.finalize().to_le_bytes());
        fixture.extend_from_slice(&42u64.to_le_bytes());
        fixture.extend_from_slice(&payload);
        assert_eq!(fixture, segment_image(&[(42, &payload)]));
        let (records, report) = decode_segment(&fixture);
        assert_eq!(
            records,
            vec![WalRecord {
                seq: 42,
                payload: payload.to_vec()
            }]
        );
        assert_eq!(report.segment_id, 7);
        assert!(report.problems.is_empty());
        assert_eq!(report.valid_bytes, fixture.len() as u64);
    }

    #[test]
    fn torn_tail_keeps_intact_records() {
        let image = segment_image(&[(1, b"one"), (2, b"two"), (3, b"three")]);
        for cut in SEGMENT_HEADER_LEN..image.len() {
            let (records, report) = decode_segment(&image[..cut]);
            let boundaries = [
                SEGMENT_HEADER_LEN,
                SEGMENT_HEADER_LEN + RECORD_HEADER_LEN + 3,
                SEGMENT_HEADER_LEN + 2 * RECORD_HEADER_LEN + 6,
            ];
            let expected = boundaries[1..].iter().filter(|&&end| end <= cut).count();
            assert_eq!(records.len(), expected, "cut at {cut}");
            let torn = usize::from(!boundaries.contains(&cut));
            assert_eq!(
                report.problems.len(),
                torn,
                "cut at {cut}: {:?}",
                report.problems
            );
        }
    }

    #[test]
    fn corrupt_record_is_skipped_and_later_records_recovered() {
        let mut image = segment_image(&[(1, b"one"), (2, b"two"), (3, b"three")]);
        // Flip a payload byte of record 2.
        let at = SEGMENT_HEADER_LEN + RECORD_HEADER_LEN + 3 + RECORD_HEADER_LEN;
        image[at] ^= 0xff;
        let (records, report) = decode_segment(&image);
        assert_eq!(
            records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![1, 3]
        );
        assert_eq!(report.problems.len(), 1);
        assert!(report.problems[0].contains("checksum mismatch"));
    }

    #[test]
    fn bad_header_is_reported() {
        let mut image = segment_image(&[(1, b"one")]);
        image[0] = b'X';
        let (records, report) = decode_segment(&image);
        assert!(records.is_empty());
        assert!(report.problems[0].contains("magic"));
        let mut image = segment_image(&[(1, b"one")]);
        image[13] ^= 1;
        assert!(decode_segment(&image).1.problems[0].contains("checksum"));
    }

    /// A segment appears whole or not at all; the temporary file a crash may
    /// leave behind is neither listed nor in the way.
    #[test]
    fn segments_are_created_whole() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join(format!("{}.tmp", segment_file_name(3)));
        fs::write(&stale, b"LTWAL").unwrap();
        assert!(list_segments(dir.path()).unwrap().is_empty());
        drop(create_segment(dir.path(), 3).unwrap());
        assert!(!stale.exists());
        assert_eq!(list_segments(dir.path()).unwrap(), vec![3]);
        let (records, report) = read_segment(dir.path(), 3).unwrap();
        assert!(
            records.is_empty() && report.problems.is_empty(),
            "{report:?}"
        );
        assert!(
            create_segment(dir.path(), 3).is_err(),
            "an existing segment is kept"
        );
    }

    #[tokio::test]
    async fn append_is_durable_ordered_and_trimmable() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Arc::new(Wal::start(dir.path(), &[], 10, 200).unwrap());
        let applied = Arc::new(Mutex::new(Vec::new()));
        let counter = Arc::new(AtomicU64::new(0));
        // One at a time: each append is its own group, so segments rotate.
        for i in 0..20u8 {
            let applied = applied.clone();
            let payload = vec![Bytes::from(vec![KIND_SPANS_IPC]), Bytes::from(vec![i; 40])];
            wal.append(payload, move |seq| {
                applied.lock().unwrap().push(seq);
            })
            .await
            .unwrap();
        }
        counter.store(20, Ordering::SeqCst);
        // Concurrently: grouped, still in sequence order.
        let mut tasks = Vec::new();
        for i in 20..50u8 {
            let wal = wal.clone();
            let applied = applied.clone();
            let counter = counter.clone();
            tasks.push(tokio::spawn(async move {
                let payload = vec![
                    Bytes::from(vec![KIND_SPANS_IPC, i]),
                    Bytes::from(vec![i; 39]),
                ];
                wal.append(payload, move |seq| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    applied.lock().unwrap().push(seq);
                })
                .await
                .unwrap()
            }));
        }
        let mut seqs = Vec::new();
        for t in tasks {
            seqs.push(t.await.unwrap());
        }
        seqs.sort();
        assert_eq!(seqs, (30..60).collect::<Vec<_>>());
        assert_eq!(counter.load(Ordering::SeqCst), 50);
        assert_eq!(*applied.lock().unwrap(), (10..60).collect::<Vec<_>>());
        let ids = list_segments(dir.path()).unwrap();
        assert!(ids.len() > 1, "small segments rotate");
        let mut recovered = Vec::new();
        for id in &ids {
            let (records, report) = read_segment(dir.path(), *id).unwrap();
            assert!(report.problems.is_empty());
            recovered.extend(records.into_iter().map(|r| r.seq));
        }
        assert_eq!(recovered, (10..60).collect::<Vec<_>>());
        let removed = wal.trim(Some(30)).unwrap();
        assert!(removed > 0);
        let mut left = Vec::new();
        for id in list_segments(dir.path()).unwrap() {
            left.extend(
                read_segment(dir.path(), id)
                    .unwrap()
                    .0
                    .into_iter()
                    .map(|r| r.seq),
            );
        }
        assert!(left.contains(&30) && left.contains(&59));
        assert!(!left.contains(&10));
        wal.close();
    }
}
