//! LightTrace storage: where an acknowledged span lives until it is Parquet in the lake.
//!
//! ```text
//! Lake::write(batch)
//!   └─► wal      append + fsync (group commit)          ── durable: now acknowledged
//!        └─► buffer  per (project, service, hour)         ── visible to queries at once
//!             └─► flush   sorted Parquet via object_store ── spans/project=…/…/hour=HH/…
//!                  └─► catalog  atomic commit of the new file; WAL segments trimmed
//!                       └─► compaction  closed hours' small files merged, one commit
//! ```
//!
//! A lake holds three tables ([`Table`]): `spans`, `logs` and `errors`. A
//! batch goes to the table whose schema it has; each table has its own
//! buffers, folder and files, and one catalog lists them all, so a query sees
//! the three at one consistent version.
//!
//! [`Lake`] is the handle the server and the query engine hold. [`Lake::snapshot`]
//! returns a consistent view (buffered batches ∪ catalogued files): each
//! acknowledged span appears in exactly one of the two, also while a flush commits.
//!
//! Stored formats, each with magic bytes, a version and checksums, are documented
//! in their modules: [`wal`] (segments) and [`catalog`] (log and checkpoints).

pub mod attribute_index;
mod buffer;
pub mod catalog;
pub mod compaction;
mod config;
mod error;
pub mod flush;
mod lake;
pub mod layout;
pub mod partition;
mod table;
pub mod trace_filter;
pub mod wal;

pub use catalog::FileEntry;
pub use compaction::{CompactionPolicy, CompactionReport};
pub use config::{ParquetOptions, SortOrder, StorageConfig, StoreLocation, WalRecordDecoder};
pub use error::{Result, StorageError};
pub use flush::{EncodedFile, encode_partition, encode_table_partition};
pub use lake::{
    BufferedPartition, FIRST_RECEIVER_KIND, Lake, LakeSnapshot, LakeStats, WriteReceipt,
};
pub use partition::PartitionKey;
pub use table::Table;
