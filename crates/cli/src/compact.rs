//! `lighttrace compact --data DIR`: merges the small files of closed hours
//! now, without a server (which does the same in the background,
//! `--compaction-interval`).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use lighttrace_storage::compaction::ORPHAN_MIN_AGE;
use lighttrace_storage::{CompactionPolicy, Lake, StorageConfig, StorageError, StoreLocation};

use crate::settings::{DEFAULT_DATA_DIR, parse_duration_or_zero};

#[derive(clap::Args, Debug)]
pub struct CompactArgs {
    /// The data directory of the lake (no server may be running on it).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    pub data: PathBuf,

    /// The object store holding the lake's Parquet files, when the server runs
    /// with --store.
    #[arg(long, value_name = "URL", env = "LIGHTTRACE_STORE")]
    pub store: Option<String>,

    /// Compact an hour's files once the hour ended this long ago; `0` compacts
    /// every hour that has ended.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration_or_zero)]
    pub min_age: Duration,

    /// Spans per compacted file at most; files of half as many stay as they are.
    #[arg(long, value_name = "N", default_value_t = CompactionPolicy::default().target_rows)]
    pub target_rows: u64,

    /// Keep the files a merge replaced this long before deleting them, for
    /// readers (`lighttrace sql --data`) that opened the lake before; `0`
    /// deletes them at once. Files still kept when the command ends are deleted
    /// by a later run or by the server's compactor.
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = parse_duration_or_zero)]
    pub delete_delay: Duration,

    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: CompactArgs) -> anyhow::Result<()> {
    if !args.data.is_dir() {
        bail!("--data {}: no such directory", args.data.display());
    }
    if args.target_rows < 2 {
        bail!("--target-rows must be at least 2");
    }
    let mut config = StorageConfig::new(&args.data);
    config.wal_decoder = Some(lighttrace_server::wal_decoder());
    if let Some(store) = &args.store {
        config.store = StoreLocation::Url(store.clone());
    }
    let lake = match Lake::open(config).await {
        Err(StorageError::Locked { path }) => {
            bail!("{path} is in use by a running server, which compacts in the background")
        }
        other => {
            other.with_context(|| format!("cannot open the lake in {}", args.data.display()))?
        }
    };
    // Spans the WAL holds and no file does yet belong to a server's next start:
    // flushing them here would put them wherever this command was pointed
    // (a wrong --store would hide them from the server) and trim the WAL.
    let unflushed = lake.stats().buffered_rows;
    if unflushed > 0 {
        bail!(
            "the WAL in {} holds {unflushed} spans that are in no file yet: start the server \
             on this directory (with its --store) to flush them, or check --store; nothing \
             was changed",
            args.data.display()
        );
    }
    let policy = CompactionPolicy {
        min_age: args.min_age,
        target_rows: args.target_rows,
        delete_delay: args.delete_delay,
        interval: None,
    };
    let files_before = lake.stats().files;
    let compacted = lake.compact(&policy, SystemTime::now()).await;
    let swept = lake.sweep_orphans(ORPHAN_MIN_AGE).await;
    let files_after = lake.stats().files;
    let closed = lake.shutdown().await;
    let report = compacted.context("compaction failed")?;
    let swept = swept.context("the sweep of uncatalogued files failed")?;
    closed.context("cannot close the lake")?;
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        value["files_before"] = files_before.into();
        value["files_after"] = files_after.into();
        value["orphans_deleted"] = swept.into();
        println!("{value}");
        return Ok(());
    }
    println!(
        "merged {} files into {} in {} partitions ({} spans, {:.1} MiB into {:.1} MiB); \
         the lake has {files_after} files (was {files_before}); deleted {} replaced and {swept} \
         uncatalogued files",
        report.files_in,
        report.files_out,
        report.partitions,
        report.rows,
        report.bytes_in as f64 / (1 << 20) as f64,
        report.bytes_out as f64 / (1 << 20) as f64,
        report.files_deleted,
    );
    Ok(())
}
