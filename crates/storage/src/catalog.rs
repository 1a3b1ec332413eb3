//! The catalog: which Parquet files are live, with their partition values and
//! statistics, persisted in the object store so queries never LIST the bucket.
//!
//! # Layout in the object store
//!
//! ```text
//! _catalog/commits/<version, 20 digits>.ltc      one per commit: files added / removed
//! _catalog/checkpoints/<version, 20 digits>.ltc  the whole file list at that version
//! _catalog/_last_checkpoint                       {"version": N}: where loading starts
//! ```
//!
//! Loading reads `_last_checkpoint`, that checkpoint, then commits `N+1`, `N+2`, …
//! until one is missing: a handful of GETs and no LIST. A commit becomes visible
//! atomically with the single PUT of its commit object (object stores and the
//! local store both make a PUT all-or-nothing). One process writes a catalog at a
//! time (the data-directory lock guarantees it for one machine).
//!
//! # Byte layout of `.ltc` objects (format version 1)
//!
//! ```text
//! offset 0   magic            8 bytes  "LTCATLOG"
//! offset 8   format version   u16 LE   1
//! offset 10  kind             u8       1 = commit, 2 = checkpoint
//! offset 11  reserved         u8       0
//! offset 12  crc              u32 LE   CRC-32 (IEEE) of bytes 16.. (rest of header + payload)
//! offset 16  catalog version  u64 LE
//! offset 24  payload length   u64 LE
//! offset 32  payload          JSON: commit {"added":[file…],"removed":[path…]},
//!                                   checkpoint {"files":[file…]}
//! ```
//!
//! A file entry in JSON: `path`, `size_bytes`, `row_count`, `project`, `service`,
//! `hour` (hours since the epoch), `min_start_ns`, `max_start_ns`, `min_end_ns`,
//! `max_end_ns`, `max_wal_seq`, `trace_filter` (base64 of
//! [`TraceIdFilter::to_bytes`]), and `table` (`logs`, `errors`) for a file of a
//! table other than `spans` (absent for `spans`, so catalogs of spans only read
//! as they always did). For those tables `min_start_ns`/`max_start_ns` bound
//! the table's time column and the `end` pair repeats them.
//!
//! A `spans` file written since the attribute index exists also has
//! `attributes`: per map (`span`, `resource`) whether its key list is
//! `complete` and, per key, `in_every_row`, the distinct `values` when there
//! are few (see [`crate::attribute_index`]) and `null_value`. Entries without
//! it (older files, other tables) read as they always did and are never
//! pruned by attribute.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::attribute_index::AttributeIndex;
use crate::error::{Result, StorageError};
use crate::partition::PartitionKey;
use crate::table::Table;
use crate::trace_filter::TraceIdFilter;

pub const CATALOG_MAGIC: [u8; 8] = *b"LTCATLOG";
pub const FORMAT_VERSION: u16 = 1;
pub const HEADER_LEN: usize = 32;
const KIND_COMMIT: u8 = 1;
const KIND_CHECKPOINT: u8 = 2;
/// A checkpoint is written every this many commits.
pub const CHECKPOINT_INTERVAL: u64 = 32;

/// One live Parquet file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileEntry {
    /// Object path relative to the lake root, e.g.
    /// `spans/project=default/service=frontend/date=2026-11-21/hour=07/<id>.parquet`.
    pub path: String,
    pub size_bytes: u64,
    pub row_count: u64,
    pub partition: PartitionKey,
    pub min_start_ns: i64,
    pub max_start_ns: i64,
    pub min_end_ns: i64,
    pub max_end_ns: i64,
    /// Highest WAL sequence number whose rows this file holds.
    pub max_wal_seq: u64,
    /// Membership filter over the file's trace ids.
    pub trace_filter: TraceIdFilter,
    /// The attribute values of a `spans` file; `None` for other tables and
    /// for files catalogued before the index existed.
    pub attribute_index: Option<Arc<AttributeIndex>>,
}

impl FileEntry {
    /// The object's location. Use this, not `Path::from(&path)`: `from` would
    /// percent-encode the `%` of escaped partition values a second time.
    pub fn object_path(&self) -> ObjectPath {
        ObjectPath::parse(&self.path).unwrap_or_else(|_| ObjectPath::from(self.path.as_str()))
    }

    /// False only if the file holds no span of this trace.
    pub fn may_contain_trace(&self, trace_id: &[u8; 16]) -> bool {
        self.trace_filter.may_contain(trace_id)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    table: Option<String>,
    path: String,
    size_bytes: u64,
    row_count: u64,
    project: String,
    service: String,
    hour: i64,
    min_start_ns: i64,
    max_start_ns: i64,
    min_end_ns: i64,
    max_end_ns: i64,
    max_wal_seq: u64,
    trace_filter: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attributes: Option<AttributeIndex>,
}

impl From<&FileEntry> for FileJson {
    fn from(f: &FileEntry) -> Self {
        FileJson {
            table: (f.partition.table != Table::Spans)
                .then(|| f.partition.table.name().to_string()),
            path: f.path.clone(),
            size_bytes: f.size_bytes,
            row_count: f.row_count,
            project: f.partition.project.to_string(),
            service: f.partition.service.to_string(),
            hour: f.partition.hour,
            min_start_ns: f.min_start_ns,
            max_start_ns: f.max_start_ns,
            min_end_ns: f.min_end_ns,
            max_end_ns: f.max_end_ns,
            max_wal_seq: f.max_wal_seq,
            trace_filter: BASE64.encode(f.trace_filter.to_bytes()),
            attributes: f.attribute_index.as_deref().cloned(),
        }
    }
}

impl TryFrom<FileJson> for FileEntry {
    type Error = StorageError;
    fn try_from(f: FileJson) -> Result<Self> {
        let filter = BASE64
            .decode(&f.trace_filter)
            .ok()
            .and_then(|b| TraceIdFilter::from_bytes(&b))
            .ok_or_else(|| StorageError::Catalog(format!("bad trace filter for {}", f.path)))?;
        let table = match f.table.as_deref() {
            None => Table::Spans,
            Some(name) => Table::from_name(name).ok_or_else(|| {
                StorageError::Catalog(format!("unknown table {name:?} for {}", f.path))
            })?,
        };
        Ok(FileEntry {
            partition: PartitionKey::of_table(table, &f.project, &f.service, f.hour),
            path: f.path,
            size_bytes: f.size_bytes,
            row_count: f.row_count,
            min_start_ns: f.min_start_ns,
            max_start_ns: f.max_start_ns,
            min_end_ns: f.min_end_ns,
            max_end_ns: f.max_end_ns,
            max_wal_seq: f.max_wal_seq,
            trace_filter: filter,
            attribute_index: f.attributes.map(Arc::new),
        })
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommitJson {
    added: Vec<FileJson>,
    removed: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointJson {
    files: Vec<FileJson>,
}

#[derive(Serialize, Deserialize)]
struct LastCheckpointJson {
    version: u64,
}

/// Encodes a `.ltc` object.
pub fn encode_object(kind: u8, version: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&CATALOG_MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.push(kind);
    out.push(0);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[16..]);
    out[12..16].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes a `.ltc` object into (kind, version, payload), checking everything.
pub fn decode_object(bytes: &[u8]) -> Result<(u8, u64, &[u8])> {
    let bad = |what: &str| StorageError::Catalog(what.to_string());
    if bytes.len() < HEADER_LEN {
        return Err(bad("catalog object shorter than its header"));
    }
    if bytes[..8] != CATALOG_MAGIC {
        return Err(bad("not a catalog object: bad magic"));
    }
    let format = u16::from_le_bytes([bytes[8], bytes[9]]);
    if format != FORMAT_VERSION {
        return Err(StorageError::Catalog(format!(
            "unsupported catalog format version {format}"
        )));
    }
    let crc = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
    if crc32fast::hash(&bytes[16..]) != crc {
        return Err(bad("catalog object checksum mismatch"));
    }
    let version = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
    let len = u64::from_le_bytes(bytes[24..32].try_into().expect("8 bytes"));
    if len != (bytes.len() - HEADER_LEN) as u64 {
        return Err(bad("catalog object length mismatch"));
    }
    Ok((bytes[10], version, &bytes[HEADER_LEN..]))
}

/// The catalog state at one version.
#[derive(Debug, Clone, Default)]
pub struct CatalogState {
    pub version: u64,
    pub files: BTreeMap<String, Arc<FileEntry>>,
}

impl CatalogState {
    /// Highest WAL sequence flushed per partition: rows of a WAL record with a
    /// sequence at or below it are already in a file.
    pub fn watermarks(&self) -> std::collections::HashMap<PartitionKey, u64> {
        let mut out = std::collections::HashMap::new();
        for file in self.files.values() {
            let mark = out.entry(file.partition.clone()).or_insert(0);
            *mark = (*mark).max(file.max_wal_seq);
        }
        out
    }

    pub fn max_wal_seq(&self) -> u64 {
        self.files
            .values()
            .map(|f| f.max_wal_seq)
            .max()
            .unwrap_or(0)
    }
}

/// Reads and writes the catalog objects.
pub struct CatalogStore {
    store: Arc<dyn ObjectStore>,
    /// Set for a local store: every object written is fsynced before returning.
    local_root: Option<std::path::PathBuf>,
}

fn commit_path(version: u64) -> ObjectPath {
    ObjectPath::from(format!("_catalog/commits/{version:020}.ltc"))
}

fn checkpoint_path(version: u64) -> ObjectPath {
    ObjectPath::from(format!("_catalog/checkpoints/{version:020}.ltc"))
}

fn last_checkpoint_path() -> ObjectPath {
    ObjectPath::from("_catalog/_last_checkpoint")
}

async fn get_optional(store: &dyn ObjectStore, path: &ObjectPath) -> Result<Option<Bytes>> {
    match store.get(path).await {
        Ok(result) => Ok(Some(result.bytes().await?)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

impl CatalogStore {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        CatalogStore {
            store,
            local_root: None,
        }
    }

    /// A catalog on a local store rooted at `root`: writes are fsynced.
    pub fn new_local(store: Arc<dyn ObjectStore>, root: Option<std::path::PathBuf>) -> Self {
        CatalogStore {
            store,
            local_root: root,
        }
    }

    async fn put_durable(&self, path: &ObjectPath, bytes: Vec<u8>) -> Result<()> {
        self.store.put(path, PutPayload::from(bytes)).await?;
        if let Some(root) = &self.local_root {
            let root = root.clone();
            let location = path.to_string();
            tokio::task::spawn_blocking(move || crate::config::sync_local(&root, &location))
                .await
                .map_err(|e| StorageError::Catalog(format!("fsync task failed: {e}")))??;
        }
        Ok(())
    }

    pub async fn load(&self) -> Result<CatalogState> {
        let mut state = CatalogState::default();
        if let Some(bytes) = get_optional(self.store.as_ref(), &last_checkpoint_path()).await? {
            let pointer: LastCheckpointJson = serde_json::from_slice(&bytes)
                .map_err(|e| StorageError::Catalog(format!("bad _last_checkpoint: {e}")))?;
            let bytes = get_optional(self.store.as_ref(), &checkpoint_path(pointer.version))
                .await?
                .ok_or_else(|| {
                    StorageError::Catalog(format!(
                        "checkpoint {} named by _last_checkpoint is missing",
                        pointer.version
                    ))
                })?;
            let (kind, version, payload) = decode_object(&bytes)?;
            if kind != KIND_CHECKPOINT || version != pointer.version {
                return Err(StorageError::Catalog(format!(
                    "checkpoint object {} has kind {kind}, version {version}",
                    pointer.version
                )));
            }
            let checkpoint: CheckpointJson = serde_json::from_slice(payload)
                .map_err(|e| StorageError::Catalog(format!("bad checkpoint {version}: {e}")))?;
            for file in checkpoint.files {
                let entry = FileEntry::try_from(file)?;
                state.files.insert(entry.path.clone(), Arc::new(entry));
            }
            state.version = version;
        }
        loop {
            let next = state.version + 1;
            let Some(bytes) = get_optional(self.store.as_ref(), &commit_path(next)).await? else {
                break;
            };
            let (kind, version, payload) = decode_object(&bytes)?;
            if kind != KIND_COMMIT || version != next {
                return Err(StorageError::Catalog(format!(
                    "commit object {next} has kind {kind}, version {version}"
                )));
            }
            let commit: CommitJson = serde_json::from_slice(payload)
                .map_err(|e| StorageError::Catalog(format!("bad commit {next}: {e}")))?;
            for path in commit.removed {
                state.files.remove(&path);
            }
            for file in commit.added {
                let entry = FileEntry::try_from(file)?;
                state.files.insert(entry.path.clone(), Arc::new(entry));
            }
            state.version = next;
        }
        Ok(state)
    }

    /// Writes commit `version` (which must be the loaded version + 1). Durable and
    /// visible to a later `load` when this returns.
    pub async fn commit(
        &self,
        version: u64,
        added: &[Arc<FileEntry>],
        removed: &[String],
    ) -> Result<()> {
        let payload = serde_json::to_vec(&CommitJson {
            added: added.iter().map(|f| FileJson::from(f.as_ref())).collect(),
            removed: removed.to_vec(),
        })
        .map_err(|e| StorageError::Catalog(e.to_string()))?;
        let object = encode_object(KIND_COMMIT, version, &payload);
        self.put_durable(&commit_path(version), object).await?;
        Ok(())
    }

    /// Writes a checkpoint of `state` and points `_last_checkpoint` at it. Then
    /// deletes the checkpoint before `previous` and the commits up to `previous`
    /// that it needed: `previous` and the commits after it stay, so a reader that
    /// read the old pointer a moment ago still finds everything it needs.
    pub async fn checkpoint(
        &self,
        state: &CatalogState,
        before_previous: u64,
        previous: u64,
    ) -> Result<()> {
        let payload = serde_json::to_vec(&CheckpointJson {
            files: state
                .files
                .values()
                .map(|f| FileJson::from(f.as_ref()))
                .collect(),
        })
        .map_err(|e| StorageError::Catalog(e.to_string()))?;
        let object = encode_object(KIND_CHECKPOINT, state.version, &payload);
        self.put_durable(&checkpoint_path(state.version), object)
            .await?;
        let pointer = serde_json::to_vec(&LastCheckpointJson {
            version: state.version,
        })
        .map_err(|e| StorageError::Catalog(e.to_string()))?;
        self.put_durable(&last_checkpoint_path(), pointer).await?;
        // Best effort: leftovers only cost space, never correctness.
        for version in before_previous.saturating_add(1)..=previous.min(state.version) {
            let _ = self.store.delete(&commit_path(version)).await;
        }
        if before_previous > 0 && before_previous < previous {
            let _ = self.store.delete(&checkpoint_path(before_previous)).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    fn entry(path: &str, seq: u64) -> Arc<FileEntry> {
        let mut filter = TraceIdFilter::with_capacity(4);
        filter.insert(&[seq as u8; 16]);
        Arc::new(FileEntry {
            path: path.to_string(),
            size_bytes: 100,
            row_count: 10,
            partition: PartitionKey::new("p", "s", 480_000),
            min_start_ns: 1,
            max_start_ns: 2,
            min_end_ns: 3,
            max_end_ns: 4,
            max_wal_seq: seq,
            trace_filter: filter,
            attribute_index: None,
        })
    }

    #[test]
    fn object_format_is_checked() {
        let object = encode_object(KIND_COMMIT, 9, b"{}");
        assert_eq!(&object[..8], b"LTCATLOG");
        assert_eq!(object.len(), HEADER_LEN + 2);
        let (kind, version, payload) = decode_object(&object).unwrap();
        assert_eq!((kind, version, payload), (KIND_COMMIT, 9, &b"{}"[..]));
        let mut corrupt = object.clone();
        corrupt[HEADER_LEN] = b'[';
        assert!(
            decode_object(&corrupt)
                .unwrap_err()
                .to_string()
                .contains("checksum")
        );
        let mut future = object.clone();
        future[8] = 2;
        assert!(
            decode_object(&future)
                .unwrap_err()
                .to_string()
                .contains("version 2")
        );
        assert!(decode_object(&object[..10]).is_err());
    }

    #[test]
    fn decodes_a_version_1_fixture() {
        // Written by hand from the documented layout.
        let payload = br#"{"added":[{"path":"a.parquet","size_bytes":5,"row_count":1,"project":"p","service":"s","hour":1,"min_start_ns":1,"max_start_ns":1,"min_end_ns":2,"max_end_ns":2,"max_wal_seq":3,"trace_filter":"AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}],"removed":[]}"#;
        let mut fixture = b"LTCATLOG\x01\x00\x01\x00\0\0\0\0".to_vec();
        fixture.extend_from_slice(&1u64.to_le_bytes());
        fixture.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        fixture.extend_from_slice(payload);
        let crc = crc32fast::hash(&fixture[16..]);
        fixture[12..16].copy_from_slice(&crc.to_le_bytes());
        let (kind, version, body) = decode_object(&fixture).unwrap();
        assert_eq!((kind, version), (KIND_COMMIT, 1));
        let commit: CommitJson = serde_json::from_slice(body).unwrap();
        let file = FileEntry::try_from(commit.added.into_iter().next().unwrap()).unwrap();
        assert_eq!(file.max_wal_seq, 3);
        assert_eq!(file.partition, PartitionKey::new("p", "s", 1));
    }

    #[test]
    fn table_is_recorded_for_files_other_than_spans() {
        let spans = entry("spans/a.parquet", 1);
        let json = serde_json::to_string(&FileJson::from(spans.as_ref())).unwrap();
        assert!(!json.contains("table"), "{json}");
        let mut logs = (*entry("logs/a.parquet", 2)).clone();
        logs.partition.table = Table::Logs;
        let json = serde_json::to_string(&FileJson::from(&logs)).unwrap();
        assert!(json.starts_with(r#"{"table":"logs","#), "{json}");
        let back = FileEntry::try_from(serde_json::from_str::<FileJson>(&json).unwrap()).unwrap();
        assert_eq!(back, logs);
        let unknown = json.replace(r#""logs""#, r#""metrics""#);
        let err = FileEntry::try_from(serde_json::from_str::<FileJson>(&unknown).unwrap());
        assert!(err.unwrap_err().to_string().contains("unknown table"));
    }

    #[test]
    fn attribute_index_round_trips_and_is_optional() {
        use crate::attribute_index::{KeyValues, MapIndex};
        let mut file = (*entry("spans/a.parquet", 1)).clone();
        let json = serde_json::to_string(&FileJson::from(&file)).unwrap();
        assert!(!json.contains("attributes"), "{json}");
        let span = MapIndex {
            complete: true,
            keys: [(
                "http.route".to_string(),
                KeyValues {
                    in_every_row: false,
                    values: Some(["/a".to_string(), "/b".to_string()].into()),
                    null_value: false,
                },
            )]
            .into(),
        };
        file.attribute_index = Some(Arc::new(AttributeIndex {
            span,
            resource: MapIndex::default(),
        }));
        let json = serde_json::to_string(&FileJson::from(&file)).unwrap();
        assert!(
            json.contains(r#""attributes":{"span":{"complete":true,"keys":{"http.route":{"in_every_row":false,"values":["/a","/b"]}}}"#),
            "{json}"
        );
        let back = FileEntry::try_from(serde_json::from_str::<FileJson>(&json).unwrap()).unwrap();
        assert_eq!(back, file);
    }

    #[tokio::test]
    async fn commits_and_checkpoints_load_back() {
        let store = CatalogStore::new(Arc::new(InMemory::new()));
        assert_eq!(store.load().await.unwrap().version, 0);
        let mut state = CatalogState::default();
        for v in 1..=5u64 {
            let added = [entry(&format!("f{v}.parquet"), v * 10)];
            let removed = if v == 4 {
                vec!["f1.parquet".to_string()]
            } else {
                vec![]
            };
            store.commit(v, &added, &removed).await.unwrap();
            for r in &removed {
                state.files.remove(r);
            }
            state.files.insert(added[0].path.clone(), added[0].clone());
            state.version = v;
            if v == 3 {
                store.checkpoint(&state, 0, 0).await.unwrap();
            }
        }
        let loaded = store.load().await.unwrap();
        assert_eq!(loaded.version, 5);
        // A second checkpoint keeps the first one and the commits after it, for
        // readers that read the old pointer; it retires what came before.
        store.checkpoint(&loaded, 0, 3).await.unwrap();
        let raw = |path: ObjectPath| {
            let store = store.store.clone();
            async move { store.get(&path).await.is_ok() }
        };
        assert!(raw(checkpoint_path(3)).await);
        assert!(raw(commit_path(4)).await && raw(commit_path(5)).await);
        assert!(!raw(commit_path(3)).await && !raw(commit_path(1)).await);
        store.checkpoint(&loaded, 3, 5).await.unwrap();
        assert!(!raw(checkpoint_path(3)).await && !raw(commit_path(4)).await);
        let loaded = store.load().await.unwrap();
        assert_eq!(loaded.version, 5);
        assert_eq!(
            loaded.files.keys().cloned().collect::<Vec<_>>(),
            vec!["f2.parquet", "f3.parquet", "f4.parquet", "f5.parquet"]
        );
        assert_eq!(loaded.files["f5.parquet"], state.files["f5.parquet"]);
        assert_eq!(loaded.max_wal_seq(), 50);
        assert_eq!(
            loaded.watermarks()[&PartitionKey::new("p", "s", 480_000)],
            50
        );
    }
}
