//! `lighttrace serve`: the lake, the query engine, the HTTP server and the
//! OTLP/gRPC server, until SIGTERM or Ctrl-C.
//!
//! Two runtimes: the server (network I/O, WAL writes, flushes) runs on the
//! runtime built here; the [`QueryEngine`] owns another one for DataFusion, so a
//! heavy query never stalls ingest.
//!
//! Shutdown, after the first SIGTERM or Ctrl-C:
//!
//! 1. a guard thread starts: if the process is still running after
//!    `--shutdown-timeout` (30 s), it logs and exits with status 1 (every
//!    acknowledged span is in the WAL, so the next start replays it);
//! 2. the HTTP and gRPC servers stop accepting and wait for requests in flight,
//!    at most half of that time; the Postgres server (`--pg`) stops accepting
//!    and closes its connections;
//! 3. [`Lake::shutdown`] flushes the buffers to Parquet and commits the catalog;
//! 4. exit 0.
//!
//! A second signal exits at once with status 1.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use lighttrace_query::QueryEngine;
use lighttrace_server::AppState;
use lighttrace_storage::{Lake, StoreLocation};
use tokio::sync::watch;

use crate::settings::{LogFormat, ServeArgs, Settings};

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let settings = Settings::resolve(args)?;
    init_logging(settings.log_filter.as_deref(), settings.log_format)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("lighttrace-io")
        .build()
        .context("cannot start the I/O runtime")?;
    // The query engine owns a runtime, which must not be dropped from inside an
    // async context; its last handle is dropped here, after `block_on`.
    let mut engine = None;
    let result = runtime.block_on(serve(settings, &mut engine));
    // Connections still open after a drain timeout must not keep us waiting.
    runtime.shutdown_timeout(Duration::from_secs(1));
    drop(engine);
    result
}

/// Logs to stderr, so that stdout has only the start line.
pub fn init_logging(filter: Option<&str>, format: LogFormat) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(filter.unwrap_or("info"))
        .with_context(|| format!("invalid log filter {filter:?}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    installed.map_err(|err| anyhow::anyhow!("cannot install the logger: {err}"))
}

async fn serve(
    settings: Settings,
    engine_slot: &mut Option<Arc<QueryEngine>>,
) -> anyhow::Result<()> {
    // Bind first: a taken port should fail fast, before WAL replay.
    let http_listener = tokio::net::TcpListener::bind(&settings.http)
        .await
        .with_context(|| format!("cannot listen on --http {}", settings.http))?;
    let http_addr = http_listener.local_addr().context("listener address")?;
    let grpc_listener = tokio::net::TcpListener::bind(&settings.grpc)
        .await
        .with_context(|| format!("cannot listen on --grpc {}", settings.grpc))?;
    let grpc_addr = grpc_listener.local_addr().context("listener address")?;
    let pg_listener = match &settings.pg {
        Some(pg) => Some(
            tokio::net::TcpListener::bind(pg)
                .await
                .with_context(|| format!("cannot listen on --pg {pg}"))?,
        ),
        None => None,
    };
    let pg_addr = match &pg_listener {
        Some(listener) => Some(listener.local_addr().context("listener address")?),
        None => None,
    };
    let mut signals = Signals::install()?;

    let data_dir = settings.storage.data_dir.clone();
    let lake_place = match &settings.storage.store {
        StoreLocation::DataDir => data_dir.display().to_string(),
        StoreLocation::Url(url) => format!("{url} (WAL in {})", data_dir.display()),
    };
    let lake = Lake::open(settings.storage.clone())
        .await
        .with_context(|| format!("cannot open the lake in {lake_place}"))?;
    let query = match QueryEngine::new(lake.clone(), settings.query.clone()) {
        Ok(query) => Arc::new(query),
        Err(err) => {
            shutdown_lake(&lake).await;
            return Err(err).context("cannot start the query engine");
        }
    };
    *engine_slot = Some(query.clone());

    let state = AppState {
        lake: lake.clone(),
        query,
        config: settings.server.clone(),
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = wait_for_stop(stop_rx.clone());
    let server = tokio::spawn(lighttrace_server::serve_with_pg(
        http_listener,
        grpc_listener,
        pg_listener,
        state,
        stopped,
    ));

    // The one line on stdout: tests and scripts read the address from it.
    let mut stdout = std::io::stdout().lock();
    let pg_note = pg_addr
        .map(|addr| format!(", {addr} (Postgres wire protocol)"))
        .unwrap_or_default();
    let _ = writeln!(
        stdout,
        "lighttrace listening on http://{http_addr} (OTLP/HTTP POST /v1/traces, SQL POST /api/v1/sql) \
         and {grpc_addr} (OTLP/gRPC){pg_note}, data in {lake_place}"
    );
    let _ = stdout.flush();
    drop(stdout);

    tokio::pin!(server);
    let server_result = tokio::select! {
        result = &mut server => Some(result),
        signal = signals.next() => {
            tracing::info!("{signal} received: shutting down");
            start_shutdown_guard(settings.shutdown_timeout);
            tokio::spawn(async move {
                let signal = signals.next().await;
                tracing::error!("{signal} received again: exiting at once");
                std::process::exit(1);
            });
            let _ = stop_tx.send(true);
            let drain = settings.shutdown_timeout / 2;
            match tokio::time::timeout(drain, &mut server).await {
                Ok(result) => Some(result),
                Err(_) => {
                    tracing::warn!(
                        "requests still running {} s after the shutdown started; not waiting for them",
                        drain.as_secs_f64()
                    );
                    None
                }
            }
        }
    };

    shutdown_lake(&lake).await;
    match server_result {
        Some(Ok(Ok(()))) | None => {
            tracing::info!("shut down cleanly");
            Ok(())
        }
        Some(Ok(Err(err))) => Err(err).context("the HTTP or gRPC server failed"),
        Some(Err(join)) => Err(join).context("the server task failed"),
    }
}

/// Flushes and commits; a failure is logged, since the WAL still holds every
/// acknowledged span and the next start replays it.
async fn shutdown_lake(lake: &Lake) {
    match lake.shutdown().await {
        Ok(()) => tracing::info!("buffers flushed, catalog committed"),
        Err(err) => tracing::error!(
            error = %err,
            "the final flush failed; the WAL keeps the data for the next start"
        ),
    }
}

async fn wait_for_stop(mut stop: watch::Receiver<bool>) {
    if stop.wait_for(|stop| *stop).await.is_err() {
        // The sender is gone without a stop: serve until the process ends.
        std::future::pending::<()>().await;
    }
}

/// Exits the process with status 1 if it is still running after `timeout`.
fn start_shutdown_guard(timeout: Duration) {
    let spawned = std::thread::Builder::new()
        .name("shutdown-guard".into())
        .spawn(move || {
            std::thread::sleep(timeout);
            tracing::error!(
                "shutdown did not finish within {} s; exiting without a final flush \
                 (the WAL keeps every acknowledged span)",
                timeout.as_secs_f64()
            );
            eprintln!("lighttrace: shutdown timed out");
            std::process::exit(1);
        });
    if let Err(err) = spawned {
        tracing::warn!(error = %err, "cannot start the shutdown guard");
    }
}

/// SIGTERM and Ctrl-C (SIGINT).
struct Signals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        Ok(Signals {
            #[cfg(unix)]
            terminate: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("cannot install the SIGTERM handler")?,
        })
    }

    /// The name of the next signal received.
    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = self.terminate.recv() => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}
