//! Chooses the Parquet layout by measurement: re-encodes the spans of an existing
//! lake under several layouts and prints bytes per span and encode speed.
//!
//! ```text
//! lighttrace gen --topology ../shared/data/topologies/hipster-shop.json --traces 100000 --data /tmp/layout-lake
//! cargo bench -p lighttrace-storage --bench parquet_layout -- /tmp/layout-lake [rows per file, default 200000] [rows per buffered batch, default 100]
//! ```
//!
//! Each partition's rows are re-cut into files of at most `rows per file` (what a
//! size-triggered flush writes), handed over in batches of `rows per buffered
//! batch` (what the buffers hold) and encoded with `encode_partition`, the
//! function the flusher uses. Results are recorded in `benches/RESULTS.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use arrow::array::RecordBatch;
use lighttrace_model::spans_schema;
use lighttrace_storage::layout::to_table_batch;
use lighttrace_storage::{ParquetOptions, SortOrder, encode_partition};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

fn parquet_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            parquet_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "parquet") {
            out.push(path);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let Some(lake) = args.first() else {
        eprintln!(
            "usage: cargo bench -p lighttrace-storage --bench parquet_layout -- LAKE_DIR [ROWS_PER_FILE]"
        );
        std::process::exit(2);
    };
    let rows_per_file: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(200_000);
    // Buffers hold one batch per request and partition: about a hundred spans
    // of one service from a thousand-span request.
    let batch_rows: usize = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100)
        .max(1);
    let mut files = Vec::new();
    parquet_files(&Path::new(lake).join("spans"), &mut files);
    let mut partitions: BTreeMap<PathBuf, Vec<RecordBatch>> = BTreeMap::new();
    let mut spans = 0usize;
    let mut on_disk = 0u64;
    for file in &files {
        on_disk += std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(file).unwrap())
            .unwrap()
            .build()
            .unwrap();
        let folder = file.parent().unwrap().to_path_buf();
        for batch in reader {
            let batch = batch.unwrap();
            let batch = to_table_batch(&batch).unwrap();
            spans += batch.num_rows();
            partitions.entry(folder.clone()).or_default().push(batch);
        }
    }
    println!(
        "{} spans in {} partitions ({} files, {:.1} B/span as stored now); files cut at {rows_per_file} rows, in batches of {batch_rows}\n",
        spans,
        partitions.len(),
        files.len(),
        on_disk as f64 / spans as f64
    );
    let chunks: Vec<Vec<RecordBatch>> = partitions
        .values()
        .flat_map(|batches| {
            let all = arrow::compute::concat_batches(&spans_schema(), batches).unwrap();
            (0..all.num_rows())
                .step_by(rows_per_file)
                .map(|offset| {
                    let file = all.slice(offset, rows_per_file.min(all.num_rows() - offset));
                    (0..file.num_rows())
                        .step_by(batch_rows)
                        .map(|o| file.slice(o, batch_rows.min(file.num_rows() - o)))
                        .collect()
                })
                .collect::<Vec<_>>()
        })
        .collect();

    let base = ParquetOptions::default();
    let variant = |name: &'static str, change: &dyn Fn(&mut ParquetOptions)| {
        let mut options = base.clone();
        change(&mut options);
        (name, options)
    };
    let variants: Vec<(&str, ParquetOptions)> = vec![
        variant(
            "default: arrival order, zstd 1, delta times, no id dictionary, bloom, binary ids, end_time derived",
            &|_| {},
        ),
        variant("ids as hex text", &|o| o.binary_ids = false),
        variant("end_time stored", &|o| o.derive_end_time = false),
        variant("ids as hex text, end_time stored (layout 1)", &|o| {
            o.binary_ids = false;
            o.derive_end_time = false;
        }),
        variant("bloom fpp 0.05", &|o| o.bloom_filter_fpp = Some(0.05)),
        variant("bloom filter in files of one row group too", &|o| {
            o.bloom_filter_single_row_group = true
        }),
        variant("page statistics on every top-level column", &|o| {
            o.page_statistics_everywhere = true
        }),
        variant("both (the previous default)", &|o| {
            o.bloom_filter_single_row_group = true;
            o.page_statistics_everywhere = true;
        }),
        variant("no statistics in attribute maps, events, links", &|o| {
            o.nested_statistics = false
        }),
        variant("sorted by trace id", &|o| o.sort_order = SortOrder::TraceId),
        variant("sorted by start time", &|o| {
            o.sort_order = SortOrder::StartTime
        }),
        variant("traces by first start, spans by start", &|o| {
            o.sort_order = SortOrder::TraceStart
        }),
        variant("dictionary on ids and times (parquet default)", &|o| {
            o.dictionary_for_unique_columns = true
        }),
        variant("PLAIN times", &|o| o.delta_encode_times = false),
        variant("no bloom filter", &|o| o.bloom_filter_fpp = None),
        variant("zstd 3", &|o| o.zstd_level = 3),
        variant("zstd 9", &|o| o.zstd_level = 9),
        variant("row groups of 16k rows", &|o| o.row_group_rows = 16 * 1024),
    ];
    // LAYOUT_KEEP=DIR keeps the files of each layout in DIR/<row number>, to
    // inspect them (for example with DuckDB's `parquet_metadata`).
    let keep = std::env::var_os("LAYOUT_KEEP").map(PathBuf::from);
    // LAYOUT_ONLY=text runs the layouts whose name contains `text`;
    // LAYOUT_REPEAT=N encodes each N times and reports the fastest.
    let only = std::env::var("LAYOUT_ONLY").ok();
    let repeat: usize = std::env::var("LAYOUT_REPEAT")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
        .max(1);
    println!("| layout | B/span | encode (spans/s, one core) |");
    println!("|---|---:|---:|");
    for (variant_index, (name, options)) in variants.into_iter().enumerate() {
        if only.as_deref().is_some_and(|text| !name.contains(text)) {
            continue;
        }
        let mut elapsed = f64::INFINITY;
        let mut bytes = 0usize;
        for _ in 0..repeat {
            let started = Instant::now();
            bytes = 0;
            for (i, chunk) in chunks.iter().enumerate() {
                let encoded = encode_partition(chunk, &options).unwrap();
                bytes += encoded.bytes.len();
                if let Some(dir) = &keep {
                    let dir = dir.join(variant_index.to_string());
                    std::fs::create_dir_all(&dir).unwrap();
                    std::fs::write(dir.join(format!("{i}.parquet")), &encoded.bytes).unwrap();
                }
            }
            elapsed = elapsed.min(started.elapsed().as_secs_f64());
        }
        println!(
            "| {name} | {:.1} | {:.0} |",
            bytes as f64 / spans as f64,
            spans as f64 / elapsed
        );
    }
}
