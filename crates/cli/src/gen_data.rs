//! `lighttrace gen --data DIR`: generated traces written straight into a lake,
//! through the same decoder the server uses, without a server.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use lighttrace_ingest::{OtlpEncoding, decode_otlp_traces};
use lighttrace_server::DEFAULT_PROJECT;
use lighttrace_storage::{Lake, StorageConfig, StorageError};
use prost::Message;

use crate::r#gen::{GenArgs, Generator, build_generator};

/// Writes the traces `args` describe into the lake at `data`, then flushes it.
pub async fn write(args: &GenArgs, data: &Path) -> anyhow::Result<()> {
    let mut generator = build_generator(args)?;
    let mut config = StorageConfig::new(data);
    // A server may have left logged requests in this directory's WAL.
    config.wal_decoder = Some(lighttrace_server::wal_decoder());
    let lake = Lake::open(config)
        .await
        .with_context(|| format!("cannot open the lake in {}", data.display()))?;
    let started = Instant::now();
    let result = write_all(&lake, &mut generator, args.batch_spans.max(1)).await;
    let flushed = lake.shutdown().await;
    let (spans, rejected, batches) = result?;
    flushed.context("cannot flush the lake")?;
    let elapsed = started.elapsed().as_secs_f64();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "traces": generator.traces_generated(),
                "spans": spans,
                "batches": batches,
                "elapsed_s": elapsed,
                "rejected_spans": rejected,
            })
        );
        return Ok(());
    }
    println!(
        "wrote {} traces, {spans} spans in {batches} batches to {} in {elapsed:.2}s ({:.0} spans/s{})",
        generator.traces_generated(),
        data.display(),
        spans as f64 / elapsed.max(1e-9),
        if rejected > 0 {
            format!(", {rejected} spans rejected")
        } else {
            String::new()
        }
    );
    Ok(())
}

async fn write_all(
    lake: &Lake,
    generator: &mut Generator,
    batch_spans: usize,
) -> anyhow::Result<(u64, u64, u64)> {
    let (mut spans, mut rejected, mut batches) = (0u64, 0u64, 0u64);
    while let Some(request) = generator.next_request(batch_spans) {
        let body = request.encode_to_vec();
        let decoded = decode_otlp_traces(&body, OtlpEncoding::Protobuf, DEFAULT_PROJECT)
            .context("the generator made a request the decoder refuses")?;
        rejected += decoded.rejected as u64;
        if decoded.batch.num_rows() == 0 {
            continue;
        }
        loop {
            match lake.write(decoded.batch.clone()).await {
                Ok(_) => break,
                // The background flusher frees buffer space; wait for it.
                Err(StorageError::Overloaded { retry_after, .. }) => {
                    tokio::time::sleep(retry_after).await;
                }
                Err(err) => return Err(err).context("cannot write to the lake"),
            }
        }
        spans += decoded.accepted as u64;
        batches += 1;
    }
    Ok((spans, rejected, batches))
}
